"""What length-bucketed batches buy a RAD training step: padding and seconds per step.

Run: ``.venv/bin/python benchmarks/length_buckets.py [--steps 12] [--threads 2]`` on an otherwise
idle machine. Writes ``benchmarks/results/length_buckets.{md,json}``.

Every row runs the steps of ``rad-b8-more.json`` in fp32 on a fresh copy of the shipped teacher,
with only ``length_buckets`` changed (``RADConfig``), so the rows differ in which studies share a
batch and nothing else. A DCD step pads the same way (to the longest trajectory of its shard).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# a site-packages module is also called "benchmarks": import the sibling script by its folder
sys.path.insert(0, str(ROOT / "benchmarks"))

from training_precision import RESULTS, SHIPPED_RECIPE, run_steps  # noqa: E402

from model.data.datasets import phantom_cache  # noqa: E402

BUCKETS = (1, 2, 4, 8, 16)


def table(rows: list[dict[str, Any]]) -> list[str]:
    uniform = rows[0]
    lines = [
        "| length_buckets | padding share of response positions | s/step | speedup vs 1 |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['length_buckets']} | {r['padding']:.2f} | {r['step_s']:.3f} | "
            f"{uniform['step_s'] / r['step_s']:.2f}x |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    cache = phantom_cache(ROOT / "runs/cache", 0, 4000, "train", 128)
    rows = []
    for buckets in BUCKETS:
        recipe = replace(SHIPPED_RECIPE, precision="fp32", length_buckets=buckets)
        row = run_steps(recipe, "fp32", "sdpa", args.threads, args.steps, cache)
        rows.append({"length_buckets": buckets} | row)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "length_buckets.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = [
        "# RAD training step: uniform against length-bucketed batches",
        "",
        "`benchmarks/length_buckets.py`: shipped `rad-b8`, batch 16 of `rad-b8-more.json` in",
        f"fp32, {args.steps} timed steps (median) after two warm-up ones, {args.threads} threads;",
        f"load average {os.getloadavg()[0]:.1f} at the end. Padding: the share of the report",
        "rows' response positions (each row padded to the batch's longest report) that hold no",
        "token.",
        "",
        *table(rows),
    ]
    (RESULTS / "length_buckets.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
