"""How the DCD teacher's confidence threshold tau shapes the trajectories the student learns.

Run: ``.venv/bin/python benchmarks/teacher_threshold.py [--studies 150] [--thresholds 0.85 1.0]``.
Decodes phantom test studies with the stage-2 multi-step sampler (S = B) of the shipped RAD
checkpoint at each tau and writes, per tau, forwards per batch of 16, label F1, BLEU-4 and the
share of *garbled* reports to ``benchmarks/results/teacher_threshold.{md,json}``.

Garbled: the text holds a doubled word ("with with"), ".." or " ,", which the phantom's report
grammar never writes; they mark positions committed together from one noisy state that do not
agree with each other, the incoherence DCD's conditional targets are meant to remove, so a
teacher that writes them hands them on to the student.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model import CHECKPOINTS  # noqa: E402
from model.bench import BenchRow, decode_all, quality  # noqa: E402
from model.checkpoint import load_checkpoint  # noqa: E402
from model.data.datasets import StudyDataset, phantom_cache  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
GARBLED = re.compile(r"\b(\w+) \1\b|\.\.| ,")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=150)
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.85, 0.95, 1.0])
    parser.add_argument("--checkpoint", type=Path, default=CHECKPOINTS / "rad-b8")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "runs" / "cache")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_checkpoint(args.checkpoint)
    size = loaded.vlm.config.image_size
    dataset = StudyDataset(
        phantom_cache(args.cache_dir, 0, args.studies, "test", size), qa_per_study=0
    )
    rows = []
    for tau in args.thresholds:
        block = loaded.vlm.config.block_size
        row = BenchRow("teacher", "diffusion-multistep", args.checkpoint, block, {"threshold": tau})
        decoded = decode_all(loaded, row, dataset, batch_size=16)
        scores = quality(decoded["texts"], dataset)
        garbled = sum(bool(GARBLED.search(text)) for text in decoded["texts"])
        rows.append(
            {
                "tau": tau,
                "forwards_per_batch_of_16": round(decoded["forwards_per_report"], 1),
                "garbled_share": round(garbled / len(dataset), 3),
                **{key: round(value, 3) for key, value in scores.items()},
            }
        )
    result = {"checkpoint": str(args.checkpoint), "studies": args.studies, "rows": rows}
    (RESULTS / "teacher_threshold.json").write_text(json.dumps(result, indent=2) + "\n")
    keys = list(rows[0])
    lines = [
        "# DCD teacher: confidence threshold tau vs the quality of its trajectories",
        "",
        f"Multi-step sampler (S = B) of `{args.checkpoint.name}` on {args.studies} phantom test "
        "studies, batch 16. From `benchmarks/teacher_threshold.py`; `garbled_share` is defined "
        "in its docstring.",
        "",
        "| " + " | ".join(keys) + " |",
        "|" + "---|" * len(keys),
        *("| " + " | ".join(str(row[k]) for k in keys) + " |" for row in rows),
    ]
    (RESULTS / "teacher_threshold.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
