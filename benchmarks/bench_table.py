"""Turns ``echocxr bench --json`` files into the committed table and plot.

Run: ``.venv/bin/python benchmarks/bench_table.py benchmarks/results/bench/*.json
[--notes benchmarks/results/bench/NOTES.md] [--plot-run FILE ...]``; the committed plot names
``b4-v21-batch1.json``, ``b8-v21-batch1.json`` and ``b16-v21-batch1.json``, one VM the same
day (the shipped students, their teachers and, at B = 4 and 16, the baselines). Each JSON is one
``echocxr bench`` run (one block size, one batch size, every engine row in the same process);
speedups are only ever taken within one run. Writes ``benchmarks/results/engines_bench.{md,png}``;
the notes file (how each run was made) is appended, so regenerating the table keeps them.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

RESULTS = Path(__file__).resolve().parent / "results"
COLUMNS = (
    "ms_per_report",
    "forwards_per_report",
    "tokens_per_forward",
    "speedup_vs_ar",
    "macro_f1_14",
    "macro_f1_14_vs_ar",
    "micro_f1_5",
    "micro_f1_5_vs_ar",
    "bleu4",
    "rouge_l",
    "repeat_rate",
    "tokens_per_report",
)
"""``*_vs_ar``: the row minus AR on the same studies [paired bootstrap 95% interval]; runs made
before the bench computed it leave the cell empty. ``tokens_per_report`` is the report length,
which the repeat rate depends on."""
PNEUMOTHORAX_FP = "pneumothorax_fp"
"""False pneumothorax findings, shown for runs whose JSON counts errors per finding: macro-F1
can rise while they do, and a reader can least afford them."""


def load_runs(paths: list[Path]) -> list[dict[str, Any]]:
    runs = [json.loads(path.read_text()) | {"file": path.name} for path in paths]
    return sorted(runs, key=lambda r: (r["engines"][0]["batch_size"], _block(r)))


def _block(run: dict[str, Any]) -> int:
    return max((row["block_size"] or 0) for row in run["engines"])


def markdown(runs: list[dict[str, Any]]) -> str:
    lines = [
        "# `echocxr bench`: decoding engines on the phantom test split",
        "",
        f"Machine: {platform.machine()}, CPU, torch threads as listed; wall-clock of the decoding "
        "only. Every table is one `echocxr bench` run: speedups compare rows of the same run.",
        "`ms_per_report` at batch 16 is the batch time divided by its reports (throughput).",
        "",
    ]
    for run in runs:
        first = run["engines"][0]
        counts_errors = "per_observation_errors" in first
        columns = (*COLUMNS, PNEUMOTHORAX_FP) if counts_errors else COLUMNS
        lines += [
            f"## B = {_block(run)}, batch {first['batch_size']}, {run['n']} {run['split']} "
            f"studies, {run['threads']} thread(s) (`{run['file']}`)",
            "",
            "| row | B | " + " | ".join(columns) + " |",
            "|---|---|" + "---|" * len(columns),
        ]
        for row in run["engines"]:
            if counts_errors:
                row = row | {PNEUMOTHORAX_FP: row["per_observation_errors"]["Pneumothorax"]["fp"]}
            cells = [_cell(row.get(column)) for column in columns]
            lines.append(
                f"| {row['row']} | {row['block_size'] or '-'} | " + " | ".join(cells) + " |"
            )
        lines.append("")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return f"{value['delta']:+.3f} [{value['low']:+.3f}, {value['high']:+.3f}]"
    return "" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def plotted_runs(runs: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """The batch-1 runs the plot shows: those ``names``d, else the newest of each block size.

    One run per block size, so every point's speedup and every other point's at that B were
    measured on the same machine at the same time; the VMs of different sessions timed AR from
    136 to 239 ms, so mixing runs would place points by the machine, not the engine.
    """
    if names:
        chosen = [run for run in runs if run["file"] in names]
        if missing := set(names) - {run["file"] for run in chosen}:
            raise SystemExit(f"--plot-run names files not given: {sorted(missing)}")
        if bad := [run["file"] for run in chosen if run["engines"][0]["batch_size"] != 1]:
            raise SystemExit(f"--plot-run takes batch-1 runs only: {bad}")
        return chosen
    newest: dict[int, dict[str, Any]] = {}
    for run in sorted(runs, key=lambda r: r["started"]):
        if run["engines"][0]["batch_size"] == 1:
            newest[_block(run)] = run
    return list(newest.values())


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    """Speedup over AR against macro-F1, one colour per run (:func:`plotted_runs`); each run's
    AR sits at 1.0."""
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for run in sorted(runs, key=_block):
        points = [row for row in run["engines"] if row["speedup_vs_ar"] is not None]
        speedups = [row["speedup_vs_ar"] for row in points]
        f1s = [row["macro_f1_14"] for row in points]
        axis.scatter(speedups, f1s, s=30, label=f"B = {_block(run)}: {run['file']}")
        for row, x, y in zip(points, speedups, f1s, strict=True):
            axis.annotate(row["row"], (x, y), fontsize=6)
    axis.set_xlabel("wall-clock speedup over the AR row of the same run (batch 1)")
    axis.set_ylabel("macro-F1 over 14 observations")
    axis.margins(x=0.2)  # room for the labels of the rightmost points
    axis.legend(fontsize=7)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--notes", type=Path, help="Markdown appended after the tables.")
    parser.add_argument(
        "--plot-run",
        action="append",
        default=[],
        help="File name of a batch-1 run to plot (repeatable; default: the newest per B).",
    )
    args = parser.parse_args()
    runs = load_runs(args.files)
    notes = "\n" + args.notes.read_text() if args.notes else ""
    (RESULTS / "engines_bench.md").write_text(
        markdown(runs) + "\n![speed vs quality](engines_bench.png)\n" + notes
    )
    plot(plotted_runs(runs, args.plot_run), RESULTS / "engines_bench.png")


if __name__ == "__main__":
    main()
