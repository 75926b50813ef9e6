"""What glancing (``DCDConfig.glance``) costs per stage-3 student step, measured.

Run: ``.venv/bin/python benchmarks/glance_step_cost.py --trajectories
runs/dcd-glance-b8/trajectories`` (the phase-1 shards of a B = 8 run). Times optimizer steps of
the student on the same shards with ``glance`` 0 and 0.5, alternating so that host noise falls
on both alike, and writes ``benchmarks/results/glance_step_cost.{md,json}``. Glancing adds one
forward without gradient before the trained one; this says what that costs on this machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch

from model.checkpoint import load_checkpoint
from model.diffusion import continue_as_stage, stage_one_studies, training_autocast
from model.distill import DCDConfig, kept_rows, student_step

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trajectories", type=Path, required=True)
    parser.add_argument("--config", type=Path, default=ROOT / "model/configs/dcd-glance-b8.json")
    parser.add_argument("--shards", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "runs/cache")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = DCDConfig.from_file(args.config)
    teacher = load_checkpoint(Path(config.teacher_checkpoint))
    vlm, tokenizer = teacher.vlm, teacher.tokenizer
    dataset = stage_one_studies(config, args.cache_dir, vlm.config.image_size, 0)
    continue_as_stage(vlm, "dcd", int(vlm.config.block_size or 0))
    vlm.train()
    optimizer = torch.optim.AdamW(vlm.lm.parameters(), lr=config.lr, weight_decay=0.0)
    step = partial(
        student_step,
        vlm,
        tokenizer,
        dataset,
        optimizer=optimizer,
        autocast=training_autocast(vlm.lm, config.precision),
    )
    shards = sorted(args.trajectories.glob("*.pt"))[: args.shards]
    seconds: dict[str, list[float]] = {"0": [], str(config.glance): []}
    for path in shards:
        shard = kept_rows(torch.load(path, weights_only=True))
        for glance in (0.0, config.glance):
            start = time.perf_counter()
            step(shard, config=replace(config, glance=glance))
            seconds[str(glance if glance else 0)].append(time.perf_counter() - start)
    median = {glance: statistics.median(values) for glance, values in seconds.items()}
    ratio = median[str(config.glance)] / median["0"]
    payload = {"threads": args.threads, "shards": len(shards), "seconds": seconds, "ratio": ratio}
    (RESULTS / "glance_step_cost.json").write_text(json.dumps(payload, indent=2) + "\n")
    (RESULTS / "glance_step_cost.md").write_text(
        "# Cost of glancing per stage-3 student step\n\n"
        f"`benchmarks/glance_step_cost.py`, {len(shards)} phase-1 shards of 16 studies (B = 8), "
        f"each stepped with glance 0 and {config.glance} in turn, {args.threads} threads.\n\n"
        "| glance | median s / step |\n|---|---|\n"
        + "".join(f"| {glance} | {value:.3f} |\n" for glance, value in median.items())
        + f"\nRatio: **{ratio:.2f}x** per step.\n"
    )
    print(f"median s/step {median}, ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
