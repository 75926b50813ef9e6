"""Where a one-step student departs from its teacher: agreement by the teacher's commit step.

Run: ``.venv/bin/python benchmarks/dcd_agreement.py [--studies 128] [--student LABEL=DIR ...]``.
The shipped RAD teacher rolls out phantom *test* studies (tau = 1: one commit per step), then each
student writes every block in one forward, seeing the teacher's previous blocks (the phase-2
layout of ``model.distill``). Per commit step s = 1..B it reports the share of positions whose
argmax equals the teacher's token. Positions committed late depend most on the tokens committed
before them in their block, the ones a one-pass student must infer jointly (ECHO section 4.2).
Writes ``benchmarks/results/dcd_agreement.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model import CHECKPOINTS  # noqa: E402
from model.checkpoint import LoadedCheckpoint, load_checkpoint  # noqa: E402
from model.data.datasets import StudyDataset, phantom_cache  # noqa: E402
from model.diffusion import first_block_start, make_canvas, rad_sequence, response_logits  # noqa: E402
from model.distill import DCDConfig, rollout  # noqa: E402
from model.train import collate  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def one_step_argmax(loaded: LoadedCheckpoint, batch: dict, tokens: torch.Tensor) -> torch.Tensor:
    """(R, W) the student's one-forward argmax at every position, teacher blocks as context."""
    vlm, tokenizer = loaded.vlm, loaded.tokenizer
    rows = batch["rows"]
    context, mask = vlm.build_context(batch["pixels"], rows.prompt_ids, rows.prompt_mask)
    block = int(vlm.config.block_size or 0)
    tail = context.shape[1] - first_block_start(context.shape[1], block)
    canvas = make_canvas(tokens, torch.ones_like(tokens), tail, block, tokenizer.eos_id)
    noisy = torch.full_like(canvas.tokens, tokenizer.mask_id)
    logits = response_logits(vlm.lm, rad_sequence(vlm.lm, context, mask, canvas, noisy))
    return logits[:, : tokens.shape[1]].argmax(-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=128)
    parser.add_argument("--teacher", type=Path, default=CHECKPOINTS / "rad-b8")
    parser.add_argument("--student", action="append", default=[], help="LABEL=DIR")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "runs" / "cache")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    students = {"undistilled (teacher, one step)": args.teacher, "dcd-b8": CHECKPOINTS / "dcd-b8"}
    students |= dict((s.rsplit("=", 1)[0], Path(s.rsplit("=", 1)[1])) for s in args.student)
    teacher = load_checkpoint(args.teacher)
    block = int(teacher.vlm.config.block_size or 0)
    size = teacher.vlm.config.image_size
    dataset = StudyDataset(phantom_cache(args.cache_dir, 0, args.studies, "test", size), 0)
    config = DCDConfig(threshold=1.0)
    batches = []
    with torch.inference_mode():
        for first in range(0, args.studies, 16):
            items = [dataset[i] for i in range(first, min(args.studies, first + 16))]
            collated = collate(items, teacher.tokenizer, teacher.vlm.config.max_response_tokens)
            rows = collated.groups[0]
            context, mask = teacher.vlm.build_context(
                collated.pixels, rows.prompt_ids, rows.prompt_mask
            )
            shard = rollout(
                teacher.vlm.lm, context, mask, config, block, teacher.vlm.config.max_response_tokens
            )
            batches.append({"pixels": collated.pixels, "rows": rows, "shard": shard})
    table = {}
    for label, directory in students.items():
        student = load_checkpoint(directory)
        hits, totals = torch.zeros(block + 1), torch.zeros(block + 1)
        with torch.inference_mode():
            for batch in batches:
                shard = batch["shard"]
                tokens, steps = shard["tokens"], shard["steps"]
                is_eos = tokens == teacher.tokenizer.eos_id
                first_eos = torch.where(is_eos.any(1), is_eos.int().argmax(1), tokens.shape[1])
                scored = torch.arange(tokens.shape[1])[None] <= first_eos[:, None]
                agree = one_step_argmax(student, batch, tokens) == tokens
                for step in range(1, block + 1):
                    chosen = scored & (steps == step)
                    hits[step] += (agree & chosen).sum()
                    totals[step] += chosen.sum()
        table[label] = {
            "overall": round(float(hits.sum() / totals.sum()), 3),
            **{f"s{s}": round(float(hits[s] / totals[s]), 3) for s in range(1, block + 1)},
        }
    (RESULTS / "dcd_agreement.json").write_text(json.dumps(table, indent=2) + "\n")
    keys = list(next(iter(table.values())))
    lines = [
        "# One-step students against the teacher, by the teacher's commit step",
        "",
        f"{args.studies} phantom test studies rolled out by `{args.teacher.name}` at tau = 1; each "
        "cell is the share of positions committed at that step where the student's one-forward "
        "argmax equals the teacher's token (teacher's previous blocks as context). From "
        "`benchmarks/dcd_agreement.py`.",
        "",
        "| student | " + " | ".join(keys) + " |",
        "|---|" + "---|" * len(keys),
        *(
            f"| {label} | " + " | ".join(str(row[k]) for k in keys) + " |"
            for label, row in table.items()
        ),
    ]
    (RESULTS / "dcd_agreement.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
