"""Where a one-step student departs from its teacher: agreement by the teacher's commit step.

Run: ``.venv/bin/python benchmarks/dcd_agreement.py [--studies 128] [--student LABEL=DIR ...]``.
The shipped RAD teacher rolls out phantom *test* studies (tau = 1: one commit per step; shards
kept under ``--rollouts``, as DCD's phase 1 writes them), then each
student writes every block in one forward, seeing the teacher's previous blocks (the phase-2
layout of ``model.distill``). Per commit step s = 1..B it reports the share of positions whose
argmax equals the teacher's token. Positions committed late depend most on the tokens committed
before them in their block, the ones a one-pass student must infer jointly (ECHO section 4.2).
Writes ``benchmarks/results/dcd_agreement.{md,json}``; ``--split train`` rolls out the first
training studies instead, the ones the shipped students' phase 1 rolled out, and writes
``dcd_agreement_train.{md,json}``: a student that agrees much more there than on test studies
has memorised its rollouts, one that agrees about as much is short of capacity, not data.
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
from model.distill import DCDConfig  # noqa: E402
from model.distill.loss import one_step_logits  # noqa: E402
from model.distill.rollouts import write_trajectories  # noqa: E402
from model.train import collate  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def agreement_by_step(
    student: LoadedCheckpoint, dataset: StudyDataset, shards: list[Path], block: int
) -> dict[str, float]:
    """Share of positions where the student's one-forward argmax is the teacher's token."""
    vlm, tokenizer = student.vlm, student.tokenizer
    hits, totals = torch.zeros(block + 1), torch.zeros(block + 1)
    for path in shards:
        shard = torch.load(path, weights_only=True)
        batch = collate(
            [dataset[int(i)] for i in shard["studies"]], tokenizer, vlm.config.max_response_tokens
        )
        rows = batch.groups[0]
        with torch.inference_mode():
            context, mask = vlm.build_context(batch.pixels, rows.prompt_ids, rows.prompt_mask)
            logits, scored = one_step_logits(
                vlm.lm,
                context,
                mask,
                shard["tokens"],
                block_size=block,
                mask_id=tokenizer.mask_id,
                eos_id=tokenizer.eos_id,
            )
        width = logits.shape[1]
        agree = logits.argmax(-1) == shard["tokens"][:, :width]
        steps = shard["steps"][:, :width]
        for step in range(1, block + 1):
            chosen = scored & (steps == step)
            hits[step] += (agree & chosen).sum()
            totals[step] += chosen.sum()
    return {
        "overall": round(float(hits.sum() / totals.sum()), 3),
        **{f"s{s}": round(float(hits[s] / totals[s]), 3) for s in range(1, block + 1)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=128)
    parser.add_argument("--teacher", type=Path, default=CHECKPOINTS / "rad-b8")
    parser.add_argument("--student", action="append", default=[], help="LABEL=DIR")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "runs" / "cache")
    parser.add_argument("--split", choices=("test", "train"), default="test")
    parser.add_argument("--rollouts", type=Path, help="default: runs/dcd-agreement/SPLIT")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    students = {"undistilled (teacher, one step)": args.teacher, "dcd-b8": CHECKPOINTS / "dcd-b8"}
    students |= dict((s.rsplit("=", 1)[0], Path(s.rsplit("=", 1)[1])) for s in args.student)
    teacher = load_checkpoint(args.teacher)
    block = int(teacher.vlm.config.block_size or 0)
    size = teacher.vlm.config.image_size
    available = {"test": args.studies, "train": DCDConfig.train_studies}[args.split]
    dataset = StudyDataset(phantom_cache(args.cache_dir, 0, available, args.split, size), 0)
    config = DCDConfig(
        studies=args.studies,
        train_studies=available,
        threshold=1.0,
        teacher_order="confidence",  # one commit a step, the surest first
        length_buckets=1,
    )
    rollouts = args.rollouts or ROOT / "runs" / "dcd-agreement" / args.split
    shards = write_trajectories(
        teacher.vlm, teacher.tokenizer, dataset, config, rollouts, teacher.weights_sha256
    )
    table = {
        label: agreement_by_step(load_checkpoint(directory), dataset, shards, block)
        for label, directory in students.items()
    }
    stem = "dcd_agreement" + ("" if args.split == "test" else "_train")
    (RESULTS / f"{stem}.json").write_text(json.dumps(table, indent=2) + "\n")
    keys = list(next(iter(table.values())))
    lines = [
        "# One-step students against the teacher, by the teacher's commit step",
        "",
        f"{args.studies} phantom {args.split} studies rolled out by `{args.teacher.name}` at "
        "tau = 1; each "
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
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
