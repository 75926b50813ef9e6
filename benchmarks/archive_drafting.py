"""Where an archive's drafting time goes: reading DICOM, decoding, writing the four files.

Run: ``.venv/bin/python benchmarks/archive_drafting.py [--n 128] [--batch-sizes 1 16 64]
[--readers 1 2]``.
Writes ``benchmarks/results/archive_drafting.{md,json}``.

``row_dropping.py`` measures the engines alone on cached model inputs. An archive also reads
each full-resolution DICOM file (1-3k pixels a side, several transfer syntaxes) down to the
model's 128 px, and writes a DICOM SR, an encapsulated PDF, a FHIR resource and report.json per
study; ``echocxr report-archive`` does all of it. This script runs ``workers.archive``'s
``draft_archive`` (what the command runs) over ``--n`` full-resolution phantom studies of an
unseen seed with each engine and batch size, in one process on one torch thread, after a
warm-up batch (the labeller and the engines' first calls load lazily), and records the seconds
of each stage and whether every setting wrote the same drafts. Reading runs in the model's
process, and then, at the largest batch size, in ``--readers`` processes beside it (their
start-up, ~2-5 s of imports, is inside the measured time: the command pays it too).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import model
from model.cli import DEFAULT_CACHE
from model.data.phantom.dataset import write_dataset
from workers.archive import StageSeconds, draft_archive
from workers.readers import DRAFTED

RESULTS = Path(__file__).parent / "results"
ARCHIVE_SEED = 20261203  # not a seed any recipe trains or benchmarks on


def phantom_archive(n: int, cache: Path) -> Path:
    """``n`` full-resolution phantom studies, one file each, written once and cached."""
    folder = cache / f"archive-seed{ARCHIVE_SEED}-n{n}"
    if not (folder / "manifest.csv").is_file():
        write_dataset(folder, n, seed=ARCHIVE_SEED, workers=2)
    return folder / "dicom"


def drafts(out: Path) -> dict[str, tuple[str, str]]:
    summaries = {
        f.name: json.loads((f / "report.json").read_text()) for f in out.iterdir() if f.is_dir()
    }
    return {name: (s["findings"], s["impression"]) for name, s in summaries.items()}


def run(
    engine: str, batch_size: int, readers: int, archive: Path, warm_up: Path
) -> tuple[dict[str, Any], dict[str, tuple[str, str]]]:
    generator = model.load(engine=engine, batch_size=batch_size)
    with tempfile.TemporaryDirectory() as scratch:
        draft_archive(warm_up, Path(scratch) / "warm-up", generator, StageSeconds())
        seconds, start = StageSeconds(), time.perf_counter()
        outcomes = draft_archive(archive, Path(scratch) / "out", generator, seconds, readers)
        wall = time.perf_counter() - start
        written = drafts(Path(scratch) / "out")
    n = sum(outcome.status == DRAFTED for outcome in outcomes)
    result = {
        "engine": engine,
        "batch_size": batch_size,
        "readers": readers,
        "drafted": n,
        "drafts_per_s": n / wall,
        "ms_per_study": 1000 * wall / n,
        "read_ms": 1000 * seconds.wait / n,
        "decode_ms": 1000 * seconds.model / n,
        "write_ms": 1000 * seconds.write / n,
    }
    return result, written


def markdown(results: list[dict[str, Any]], settings: dict[str, Any]) -> str:
    lines = [
        f"# Drafting an archive: {settings['n']} full-resolution phantom studies, "
        f"one torch thread ({settings['date']})",
        "",
        "`benchmarks/archive_drafting.py`; per study, averaged over the archive.",
        "",
        "| engine | batch | reader processes | drafts/s | ms/study | read (waited for) "
        "| decode + label | write | decode share |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        share = r["decode_ms"] / r["ms_per_study"]
        lines.append(
            f"| {r['engine']} | {r['batch_size']} | {r['readers']} | {r['drafts_per_s']:.2f} | "
            f"{r['ms_per_study']:.1f} | {r['read_ms']:.1f} | {r['decode_ms']:.1f} | "
            f"{r['write_ms']:.1f} | {share:.0%} |"
        )
    same = ", ".join(f"{e}: {'yes' if ok else 'NO'}" for e, ok in settings["identical"].items())
    lines += ["", f"Every setting wrote the same drafts: {same}.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--readers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--engines", nargs="+", default=["ar", "diffusion-onestep"])
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--out", type=Path, default=RESULTS / "archive_drafting")
    args = parser.parse_args()
    torch.set_num_threads(1)
    archive = phantom_archive(args.n, args.cache_dir)
    warm_up = phantom_archive(2, args.cache_dir)
    results, identical = [], {}
    for engine in args.engines:
        settings_run = [(size, 0) for size in args.batch_sizes]
        settings_run += [(max(args.batch_sizes), readers) for readers in args.readers]
        written = [run(engine, size, readers, archive, warm_up) for size, readers in settings_run]
        results += [result for result, _ in written]
        identical[engine] = all(texts == written[0][1] for _, texts in written)
        print(results[-len(written) :])
    settings = {
        "n": args.n,
        "seed": ARCHIVE_SEED,
        "threads": 1,
        "date": time.strftime("%Y-%m-%d"),
        "machine": platform.processor() or platform.machine(),
        "identical": identical,
    }
    args.out.with_suffix(".json").write_text(
        json.dumps({"settings": settings, "results": results}, indent=2) + "\n"
    )
    args.out.with_suffix(".md").write_text(markdown(results, settings))


if __name__ == "__main__":
    main()
