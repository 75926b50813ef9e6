"""What length-bucketed batches buy a RAD training step: padding and seconds per step.

Run: ``.venv/bin/python benchmarks/length_buckets.py [--steps 12] [--threads 2]`` on an otherwise
idle machine. Writes ``benchmarks/results/length_buckets.{md,json}``.

Every row runs the steps of ``rad-b8.json`` (the second part of the shipped teacher's recipe,
``rad-b8-more.json`` when it was measured) on a fresh copy of the shipped teacher, with only
``length_buckets`` changed (``RADConfig``), so the rows differ in which studies share a batch and
nothing else: forward, backward, clipping and AdamW, timed in wall seconds per step (median
after two warm-up steps). A DCD step pads the same way (to the longest trajectory of its shard).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from model.checkpoint import load_checkpoint
from model.data.datasets import StudyDataset, phantom_cache
from model.diffusion import RADConfig, continue_as_stage, loss_tokens_per_row, rad_batch, rad_step

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BUCKETS = (1, 2, 4, 8, 16)
WARMUP = 2
# the recipe the steps come from: batch 16 at the continued run's learning rate
SHIPPED_RECIPE = RADConfig.from_file(ROOT / "model/configs/rad-b8.json")


def run_steps(recipe: RADConfig, threads: int, steps: int, cache: Path) -> dict[str, Any]:
    """Time ``steps`` training steps of ``recipe`` on a fresh copy of the shipped teacher.

    ``padding`` is the share of the report rows' response positions that are padding.
    """
    torch.set_num_threads(threads)
    loaded = load_checkpoint(ROOT / "model/checkpoints/rad-b8")
    vlm, tokenizer = loaded.vlm, loaded.tokenizer
    continue_as_stage(vlm, "rad", recipe.block_size)
    dataset = StudyDataset(cache, qa_per_study=0, seed=0)
    per_row = loss_tokens_per_row(recipe.length_buckets, dataset.records, tokenizer)
    optimizer = torch.optim.AdamW([p for p in vlm.parameters() if p.requires_grad], lr=recipe.lr)
    vlm.train()
    seconds, padding = [], []
    for step in range(WARMUP + steps):
        batch = rad_batch(dataset, tokenizer, recipe, vlm.config.max_response_tokens, 0, step)
        padding.append(1 - batch.groups[0].response_mask.float().mean().item())
        began = time.perf_counter()
        rad_step(vlm, batch, tokenizer, recipe, optimizer, per_row)
        seconds.append(time.perf_counter() - began)
    return {"step_s": statistics.median(seconds[WARMUP:]), "padding": statistics.mean(padding)}


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
        recipe = replace(SHIPPED_RECIPE, length_buckets=buckets)
        row = run_steps(recipe, args.threads, args.steps, cache)
        rows.append({"length_buckets": buckets} | row)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "length_buckets.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = [
        "# RAD training step: uniform against length-bucketed batches",
        "",
        "`benchmarks/length_buckets.py`: shipped `rad-b8`, batch 16 of `rad-b8.json` in",
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
