"""What dropping finished rows from a batch buys the AR and one-step engines (archive throughput).

Run: ``nice -n 10 .venv/bin/python benchmarks/row_dropping.py [--n 256] [--repeats 3]``.
Writes ``benchmarks/results/row_dropping.{md,json,png}``; ``--batch-sizes 64 --fractions 0.01
0.125 0.25 0.5 --out benchmarks/results/row_dropping_fractions`` compares when to cut a batch
(no plot for one batch size).

A batch decodes until its longest report ends. Both engines now drop rows that have ended
(``model.decoding.ActiveRows``). This script decodes the first ``--n`` phantom test studies with
the shipped checkpoints (AR; the DCD student under its report n-grams, the one-step engine's
default) at each batch size, with dropping and without, alternating, in one process on one
thread. Per run:

- ``row_tokens_per_report``: query tokens times rows, summed over the forwards, per report: the
  work the forwards were handed, the same on every machine;
- ``cpu_ms_per_report``: process CPU time of the whole batch loop (context encoding included),
  fastest of ``--repeats``; with one thread it is wall time on an idle core and, unlike wall
  time, not the neighbours' load;
- ``identical``: every report equal with and without dropping (greedy decoding of a row must not
  depend on which rows share its batch).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from model import SHIPPED_CHECKPOINTS
from model.autoregressive import AREngine
from model.bench import BenchRow, decode_all
from model.checkpoint import LoadedCheckpoint, load_checkpoint
from model.cli import DEFAULT_CACHE
from model.data.datasets import StudyDataset, phantom_cache
from model.generation import ActiveRows
from model.sampling import OneStepEngine

RESULTS = Path(__file__).parent / "results"
ENGINES: dict[str, Any] = {"ar": AREngine, "diffusion-onestep": OneStepEngine}


@contextlib.contextmanager
def dropping(engine: str, fraction: float | None) -> Iterator[None]:
    """Decode with ``engine`` dropping ended rows once ``fraction`` of the batch has ended, or
    keeping them (None); class settings, not engine options."""
    before = ENGINES[engine].drop_finished_rows, ActiveRows.DROP_FRACTION
    ENGINES[engine].drop_finished_rows = fraction is not None
    ActiveRows.DROP_FRACTION = before[1] if fraction is None else fraction
    try:
        yield
    finally:
        ENGINES[engine].drop_finished_rows, ActiveRows.DROP_FRACTION = before


def count_row_tokens(loaded: LoadedCheckpoint) -> list[int]:
    """Rows x query tokens of every forward of ``loaded``'s language model, appended as it runs."""
    counts: list[int] = []

    def hook(_module: Any, _args: Any, kwargs: dict[str, Any], _output: Any) -> None:
        inputs = kwargs.get("inputs_embeds")
        shape = (inputs if inputs is not None else kwargs["input_ids"]).shape
        counts.append(shape[0] * shape[1])

    loaded.vlm.lm.model.register_forward_hook(hook, with_kwargs=True)
    return counts


def measure(
    loaded: LoadedCheckpoint,
    row: BenchRow,
    dataset: StudyDataset,
    batch_size: int,
    counts: list[int],
) -> tuple[list[str], float, float]:
    """(reports, CPU ms per report, row-tokens per report) of one pass over ``dataset``."""
    counts.clear()
    start = time.process_time()
    texts = decode_all(loaded, row, dataset, batch_size)["texts"]
    cpu_ms = 1000 * (time.process_time() - start) / len(dataset)
    return texts, cpu_ms, sum(counts) / len(dataset)


def engine_rows(
    engine: str,
    dataset: StudyDataset,
    batch_sizes: list[int],
    fractions: list[float],
    repeats: int,
) -> list[dict[str, Any]]:
    """Per batch size and drop fraction: dropping against keeping, runs alternating."""
    checkpoint = SHIPPED_CHECKPOINTS[engine]
    loaded = load_checkpoint(checkpoint)
    counts = count_row_tokens(loaded)
    row = BenchRow(engine, engine, checkpoint, loaded.vlm.config.block_size)
    modes: list[float | None] = [None, *fractions]
    results = []
    for batch_size in batch_sizes:
        best = dict.fromkeys(modes, float("inf"))
        texts: dict[float | None, list[str]] = {}
        work: dict[float | None, float] = {}
        for _ in range(repeats):
            for mode in modes:
                with dropping(engine, mode):
                    texts[mode], cpu_ms, work[mode] = measure(
                        loaded, row, dataset, batch_size, counts
                    )
                best[mode] = min(best[mode], cpu_ms)
        for fraction in fractions:
            results.append(
                {
                    "engine": engine,
                    "batch_size": batch_size,
                    "drop_fraction": fraction,
                    "cpu_ms_per_report_keep": best[None],
                    "cpu_ms_per_report_drop": best[fraction],
                    "reports_per_s_keep": 1000 / best[None],
                    "reports_per_s_drop": 1000 / best[fraction],
                    "speedup": best[None] / best[fraction],
                    "row_tokens_per_report_keep": work[None],
                    "row_tokens_per_report_drop": work[fraction],
                    "work_ratio": work[None] / work[fraction],
                    "identical": texts[fraction] == texts[None],
                }
            )
            print(json.dumps(results[-1]), flush=True)
    return results


COLUMNS = (
    "engine",
    "batch_size",
    "drop_fraction",
    "reports_per_s_keep",
    "reports_per_s_drop",
    "speedup",
    "row_tokens_per_report_keep",
    "row_tokens_per_report_drop",
    "work_ratio",
    "identical",
)


def table(rows: list[dict[str, Any]]) -> Iterator[str]:
    yield "| " + " | ".join(COLUMNS) + " |"
    yield "|" + "---|" * len(COLUMNS)
    for row in rows:
        cells = [f"{row[c]:.2f}" if isinstance(row[c], float) else str(row[c]) for c in COLUMNS]
        yield "| " + " | ".join(cells) + " |"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3.5))
    fraction = rows[0]["drop_fraction"]
    for engine, colour in zip(ENGINES, ("tab:blue", "tab:orange"), strict=True):
        mine = [r for r in rows if r["engine"] == engine and r["drop_fraction"] == fraction]
        sizes = [r["batch_size"] for r in mine]
        axis.plot(sizes, [r["reports_per_s_keep"] for r in mine], "--", color=colour)
        axis.plot(sizes, [r["reports_per_s_drop"] for r in mine], "-o", color=colour, label=engine)
    axis.set_xscale("log", base=2)
    axis.set_xlabel("batch size")
    axis.set_ylabel("reports / CPU second (1 thread)")
    axis.set_title("dashed: ended rows kept; solid: dropped")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=256, help="phantom test studies")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 16, 64, 128])
    parser.add_argument(
        "--fractions",
        type=float,
        nargs="+",
        default=[ActiveRows.DROP_FRACTION],
        help="share of a batch that must have ended before it is cut (the engines' setting)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "row_dropping")
    args = parser.parse_args()
    torch.set_num_threads(1)
    image_size = load_checkpoint(SHIPPED_CHECKPOINTS["ar"]).vlm.config.image_size
    dataset = StudyDataset(
        phantom_cache(DEFAULT_CACHE, 0, args.n, "test", image_size), qa_per_study=0
    )
    rows = [
        row
        for engine in ENGINES
        for row in engine_rows(engine, dataset, args.batch_sizes, args.fractions, args.repeats)
    ]
    machine = f"{platform.machine()}, torch {torch.__version__}, 1 thread"
    args.out.with_suffix(".json").write_text(
        json.dumps({"n": args.n, "machine": machine, "rows": rows}, indent=2) + "\n"
    )
    lines = [
        "# Dropping ended rows from a batch (`benchmarks/row_dropping.py`)",
        "",
        f"{args.n} phantom test studies, shipped checkpoints (one-step under its report "
        f"n-grams), {machine}, fastest of {args.repeats} alternating runs in CPU time. "
        "`row_tokens` counts rows x query tokens over every forward: the work handed to the "
        "model, independent of the machine. `work_ratio` and `speedup` are keep / drop; "
        "`drop_fraction` is the share of the batch that must have ended before it is cut.",
        "",
        *table(rows),
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    if len(args.batch_sizes) > 1:  # the plot is throughput against batch size
        plot(rows, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
