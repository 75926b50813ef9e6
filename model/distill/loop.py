"""The stage-3 run (``echocxr distill``): phase 1's rollouts, then the student's epochs.

Phase 2 snapshots after every epoch, so a killed run resumes; phase 1 and the student-prefix
round keep their shards on disk, so they resume too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import torch

from model.blocks import DiffusionError
from model.checkpoint import load_checkpoint
from model.diffusion import (
    continue_as_stage,
    export_run,
    loss_tokens_per_row,
    stage_one_studies,
)
from model.distill.config import DCDConfig
from model.distill.loss import dcd_loss, kept_rows
from model.distill.rollouts import write_student_prefix, write_trajectories
from model.report_ngrams import ReportNgrams
from model.tokenizer import Tokenizer
from model.train import clipped_step, collate, save_state
from model.vlm import VLM

log = logging.getLogger(__name__)
TEACHER_PREFIX, STUDENT_PREFIX = "teacher prefix", "student prefix"
STATE_FILE = "dcd_state.pt"
ROUND_DIRECTORY = "student-prefix"


def distill(
    config: DCDConfig, out: Path, cache_root: Path, seed: int = 0, stop_after: int | None = None
) -> Path | None:
    """Phase 1 (resumable, shards in ``trajectories``) then phase 2 (resumable after each epoch,
    ``dcd_state.pt``); exports ``out/checkpoint``. ``stop_after`` epochs simulates a kill."""
    teacher = load_checkpoint(Path(config.teacher_checkpoint))
    vlm, tokenizer = teacher.vlm, teacher.tokenizer
    if vlm.config.block_size is None:
        raise DiffusionError(
            f"{config.teacher_checkpoint} is an AR checkpoint; DCD needs the stage-2 (RAD) teacher"
        )
    block_size = vlm.config.block_size
    dataset = stage_one_studies(
        config.phantom_seed, config.train_studies, cache_root, vlm.config.image_size, seed
    )
    # the student's own table: the round may write under it, and the checkpoint carries it
    vlm.report_ngrams = ReportNgrams.of_texts((r.report_text for r in dataset.records), tokenizer)
    directory = Path(config.trajectories) if config.trajectories else out / "trajectories"
    phase_1 = write_trajectories(vlm, tokenizer, dataset, config, directory, teacher.weights_sha256)
    continue_as_stage(vlm, "dcd", block_size)
    optimizer = torch.optim.AdamW(
        [p for p in vlm.lm.parameters() if p.requires_grad], lr=config.lr, weight_decay=0.0
    )
    out.mkdir(parents=True, exist_ok=True)
    history = resume_student(vlm, optimizer, out / STATE_FILE, seed)
    vlm.train()
    start = time.perf_counter()
    student = partial(
        student_step,
        vlm,
        tokenizer,
        dataset,
        config=config,
        optimizer=optimizer,
        tokens_per_row=loss_tokens_per_row(config.length_buckets, dataset.records, tokenizer),
    )
    round_shards: list[Path] = []
    for prefix in epoch_plan(config)[len(history) :]:
        if prefix == STUDENT_PREFIX and not round_shards:
            round_shards = student_prefix_shards(config, vlm, tokenizer, dataset, out, history)
        shards = phase_1 + (round_shards if prefix == STUDENT_PREFIX else [])
        history.append(train_epoch(student, shards, prefix, len(history), start))
        save_state(
            out / STATE_FILE,
            {
                "lm": vlm.lm.state_dict(),
                "optimizer": optimizer.state_dict(),
                "history": history,
                "rng": torch.get_rng_state(),
            },
        )
        if stop_after is not None and len(history) >= stop_after:
            return None
    kept = sum(int(torch.load(p, weights_only=True)["keep"].sum()) for p in phase_1)
    metrics = {
        "dcd_history": history,
        "dcd_config": asdict(config),
        "kept_trajectories": kept,
        "seed": seed,
    }
    return export_run(vlm, tokenizer, out, dataset, metrics)


def epoch_plan(config: DCDConfig) -> list[str]:
    """Phase 2's epochs in order, by the prefix their newest shards condition on."""
    round_epochs = config.student_prefix_epochs if config.student_prefix_studies else 0
    return [TEACHER_PREFIX] * config.epochs + [STUDENT_PREFIX] * round_epochs


def resume_student(
    vlm: VLM, optimizer: torch.optim.Optimizer, state_path: Path, seed: int
) -> list[dict[str, Any]]:
    """Load phase 2's snapshot (written after every epoch) if there is one; its history."""
    if not state_path.is_file():
        torch.manual_seed(seed)
        return []
    state = torch.load(state_path, weights_only=False)
    vlm.lm.load_state_dict(state["lm"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    log.info("resumed DCD after epoch %d", len(state["history"]))
    return list(state["history"])


def student_prefix_shards(
    config: DCDConfig,
    vlm: VLM,
    tokenizer: Tokenizer,
    dataset: Any,
    out: Path,
    history: list[dict[str, Any]],
) -> list[Path]:
    """The round's shards: written now, or, when the run is already past the round's first
    epoch (the student has moved on since it wrote them), the ones on disk."""
    directory = out / ROUND_DIRECTORY
    if any(entry["prefix"] == STUDENT_PREFIX for entry in history):
        return sorted(directory.glob("shard-*.pt"))
    teacher = load_checkpoint(Path(config.teacher_checkpoint)).vlm.lm.eval()
    return write_student_prefix(teacher, vlm, tokenizer, dataset, config, directory)


def train_epoch(
    step: Callable[[dict[str, torch.Tensor]], float],
    shards: list[Path],
    prefix: str,
    done: int,
    start: float,
) -> dict[str, Any]:
    """One pass over ``shards`` in random order (kept rows only); the epoch's history entry."""
    losses = []
    for index in torch.randperm(len(shards)).tolist():
        shard = kept_rows(torch.load(shards[index], weights_only=True))
        if len(shard["studies"]):
            losses.append(step(shard))
    entry = {
        "epoch": done + 1,
        "prefix": prefix,
        "loss": round(sum(losses) / max(1, len(losses)), 4),
        "seconds": round(time.perf_counter() - start, 1),
    }
    log.info("DCD epoch %d (%s) loss %.4f", entry["epoch"], prefix, entry["loss"])
    return entry


def student_step(
    vlm: VLM,
    tokenizer: Tokenizer,
    dataset: Any,
    shard: dict[str, torch.Tensor],
    *,
    config: DCDConfig,
    optimizer: torch.optim.Optimizer,
    tokens_per_row: float | None = None,
) -> float:
    """One optimizer step of the student on the kept rows of one shard."""
    batch = collate(
        [dataset[int(i)] for i in shard["studies"]], tokenizer, vlm.config.max_response_tokens
    )
    rows = batch.groups[0]
    with torch.no_grad():
        visual = vlm.embed_images(batch.pixels)
    context, mask = vlm.assemble_context(visual, rows.prompt_ids, rows.prompt_mask)
    loss = dcd_loss(
        vlm.lm,
        context,
        mask,
        shard,
        block_size=int(vlm.config.block_size or 0),
        mask_id=tokenizer.mask_id,
        eos_id=tokenizer.eos_id,
        target=config.target,
        step_weighting=config.step_weighting,
        eos_weight=config.eos_weight,
        tokens_per_row=tokens_per_row,
    )
    clipped_step(loss, optimizer, vlm.lm.parameters())
    return float(loss.item())
