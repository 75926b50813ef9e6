"""What bf16 autocast and the attention kernel buy a RAD training step on this CPU.

Run: ``.venv/bin/python benchmarks/training_precision.py [--steps 12]`` on an otherwise idle
machine. Writes ``benchmarks/results/training_precision.{md,json}``.

Each configuration starts from the shipped ``rad-b8`` checkpoint and runs the same RAD steps of
``rad-b8-more.json`` (batch 16, the same batches and noise draws): forward, backward, clipping and
AdamW, timed in wall seconds per step (median after two warm-up steps). The losses of those steps
are compared with fp32's, step by step, to show that bf16 trains the same objective. Under bf16
the output projection stays fp32 (``model.diffusion.response_logits``).
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
from model.diffusion import (
    RADConfig,
    continue_as_stage,
    loss_tokens_per_row,
    rad_batch,
    rad_step,
    training_autocast,
)

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).parent.parent
CONFIGS = (("fp32", "sdpa"), ("bf16", "sdpa"), ("bf16", "eager"))
WARMUP = 2
# the recipe the steps come from: batch 16 at the continued run's learning rate
SHIPPED_RECIPE = RADConfig.from_file(REPO / "model/configs/rad-b8-more.json")


def run_steps(
    recipe: RADConfig, precision: str, attention: str, threads: int, steps: int, cache: Path
) -> dict[str, Any]:
    """Time ``steps`` training steps of ``recipe`` on a fresh copy of the shipped teacher.

    ``padding`` is the share of the report rows' response positions that are padding.
    """
    torch.set_num_threads(threads)
    loaded = load_checkpoint(REPO / "model/checkpoints/rad-b8")
    vlm, tokenizer = loaded.vlm, loaded.tokenizer
    continue_as_stage(vlm, "rad", recipe.block_size)
    autocast = training_autocast(vlm.lm, precision)
    vlm.lm.set_attn_implementation(attention)  # bf16 + sdpa: the kernel eager replaces
    dataset = StudyDataset(cache, qa_per_study=0, seed=0)
    per_row = loss_tokens_per_row(recipe.length_buckets, dataset.records, tokenizer)
    optimizer = torch.optim.AdamW([p for p in vlm.parameters() if p.requires_grad], lr=recipe.lr)
    vlm.train()
    seconds, losses, padding = [], [], []
    for step in range(WARMUP + steps):
        batch = rad_batch(dataset, tokenizer, recipe, vlm.config.max_response_tokens, 0, step)
        padding.append(1 - batch.groups[0].response_mask.float().mean().item())
        began = time.perf_counter()
        losses.append(rad_step(vlm, batch, tokenizer, recipe, optimizer, autocast, per_row))
        seconds.append(time.perf_counter() - began)
    return {
        "precision": precision,
        "attention": attention,
        "threads": threads,
        "step_s": statistics.median(seconds[WARMUP:]),
        "losses": losses,
        "padding": statistics.mean(padding),
    }


def table(rows: list[dict[str, Any]]) -> list[str]:
    baseline = {r["threads"]: r for r in rows if (r["precision"], r["attention"]) == CONFIGS[0]}
    lines = [
        "| precision | attention | threads | s/step | speedup vs fp32 sdpa | "
        "mean abs loss difference vs fp32 |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        base = baseline[r["threads"]]
        diff = statistics.mean(abs(a - b) for a, b in zip(r["losses"], base["losses"], strict=True))
        lines.append(
            f"| {r['precision']} | {r['attention']} | {r['threads']} | {r['step_s']:.3f} | "
            f"{base['step_s'] / r['step_s']:.2f}x | {diff:.4f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    cache = phantom_cache(REPO / "runs/cache", 0, 4000, "train", 128)
    recipe = replace(SHIPPED_RECIPE, precision="fp32", length_buckets=1)
    rows = [
        run_steps(recipe, precision, attention, threads, args.steps, cache)
        for threads in args.threads
        for precision, attention in CONFIGS
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "training_precision.json").write_text(json.dumps(rows, indent=2) + "\n")
    mean_loss = statistics.mean(rows[0]["losses"])
    lines = [
        "# RAD training step: fp32 against bf16 autocast, and the attention kernel",
        "",
        f"`benchmarks/training_precision.py`: shipped `rad-b8`, batch 16 of `rad-b8-more.json`, "
        f"{args.steps} timed steps (median) after {WARMUP} warm-up ones, the same batches and",
        "noise in every row (under bf16 the output projection stays fp32); load average "
        f"{os.getloadavg()[0]:.1f} at the end. The fp32 loss "
        f"of these steps averages {mean_loss:.3f}.",
        "",
        *table(rows),
    ]
    (RESULTS / "training_precision.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
