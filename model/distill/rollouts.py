"""DCD phase 1: the teacher's rollouts, stored as shards of targets (ECHO Alg. 1, phase 1).

The frozen stage-2 teacher writes its own reports with the multi-step sampler, block by block,
conditioned on its own previous blocks. For every generated position it keeps the distribution
at the step the position was committed, its argmax and that step
(:class:`model.sampling.BlockTrace`), and, for the factorized baseline, the distribution the same
position had at step 1 (one noisy state: the fully masked block). Trajectories whose raw teacher
output loops (a block identical to the previous one, or no ``<eos>`` before the cap) are
discarded. They are precomputed to disk, one shard per teacher batch, because the teacher is the
expensive part (S forwards per block): a shard on disk makes phase 1 resumable, lets phase 2 run
several epochs without re-running the teacher, and lets the factorized baseline train on exactly
the same rollouts.

Distributions are stored as their top ``top_k`` probabilities plus the remaining mass, so the
KL is computed exactly on the coarsened distribution (top-k tokens + one "rest" bucket); with a
1k vocabulary and k = 32 the rest is typically under 1e-3 of the mass.

The student-prefix round (:func:`write_student_prefix`) rolls the teacher out again, each block
conditioned on the student's previous blocks instead of its own.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm import tqdm

from model.blocks import DiffusionError
from model.distill.config import DCDConfig
from model.generation import special_id
from model.sampling import BlockTrace, OneStepEngine, decode_blocks, forced_block
from model.train import collate, length_sorted_batches

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM

    from model.report_ngrams import NgramPrior
    from model.tokenizer import Tokenizer
    from model.vlm import VLM


def top_k_with_rest(probs: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(..., V)`` -> ``(ids (..., k), probs (..., k + 1))``; the last column is the rest."""
    top, ids = probs.topk(k, -1)
    rest = (1 - top.sum(-1, keepdim=True)).clamp(min=0)
    return ids, torch.cat([top, rest], -1)


def repeats_a_block(tokens: torch.Tensor, block_widths: list[int]) -> torch.Tensor:
    """(R,) True where some block of the raw output equals the block before it."""
    blocks = list(tokens.split(block_widths, 1))
    repeated = torch.zeros(tokens.shape[0], dtype=torch.bool, device=tokens.device)
    for previous, block in itertools.pairwise(blocks):
        if previous.shape == block.shape:
            repeated |= (previous == block).all(1)
    return repeated


def looping_rows(tokens: torch.Tensor, block_widths: list[int], eos_id: int) -> torch.Tensor:
    """(R,) trajectories to discard: no ``<eos>``, or a block repeated before the first one."""
    has_eos = (tokens == eos_id).any(1)
    first_eos = torch.where(has_eos, (tokens == eos_id).int().argmax(1), tokens.shape[1])
    position = torch.arange(tokens.shape[1], device=tokens.device)[None]
    before_eos = torch.where(
        position > first_eos[:, None], -1 - position, tokens
    )  # all distinct after eos
    return ~has_eos | repeats_a_block(before_eos, block_widths)


def rollout(
    lm: LlamaForCausalLM,
    context: torch.Tensor,
    context_mask: torch.Tensor,
    config: DCDConfig,
    block_size: int,
    max_new_tokens: int,
    prefix_writer: LlamaForCausalLM | None = None,
    prefix_prior: NgramPrior | None = None,
) -> dict[str, torch.Tensor]:
    """One teacher batch: commit-time and step-1 targets, steps, tokens and the keep flag.

    ``tokens`` are the blocks every next block conditions on: the teacher's own (phase 1), or,
    with ``prefix_writer``, that model's one-step report (the student-prefix round, written under
    ``prefix_prior`` when given, as the one-step engine writes), which is kept whole, loops
    included: those are the states the student must learn to leave.
    """
    eos_id = special_id(lm, "eos_token_id")
    forced = None
    if prefix_writer is not None:
        forced = decode_blocks(
            prefix_writer,
            context,
            context_mask,
            block_size=block_size,
            steps=1,
            threshold=1.0,
            max_new_tokens=max_new_tokens,
            ngram_prior=prefix_prior,
        ).tokens
    trace = BlockTrace()
    decode_blocks(
        lm,
        context,
        context_mask,
        block_size=block_size,
        steps=config.teacher_steps or block_size,
        threshold=config.threshold,
        max_new_tokens=max_new_tokens,
        repetition_guard=False,
        trace=trace,
        forced=forced,
        order=config.teacher_order,
    )
    own = torch.cat(trace.tokens, 1)
    widths = [t.shape[1] for t in trace.tokens]
    commit_ids, commit_probs = top_k_with_rest(torch.cat(trace.probs, 1), config.top_k)
    first_ids, first_probs = top_k_with_rest(torch.cat(trace.first, 1), config.top_k)
    if forced is None:
        tokens, keep = own, ~looping_rows(own, widths, eos_id)
    else:
        tokens = forced_block(forced, 0, own.shape[1], eos_id)
        keep = torch.ones(own.shape[0], dtype=torch.bool, device=own.device)
    return {
        "tokens": tokens,
        "steps": torch.cat(trace.steps, 1),
        "keep": keep,
        "commit_ids": commit_ids,
        "commit_probs": commit_probs.half(),
        "first_ids": first_ids,
        "first_probs": first_probs.half(),
    }


ROLLOUT_FILE = "rollout.json"


def rollout_settings(config: DCDConfig, teacher_sha256: str) -> dict[str, Any]:
    """What phase-1 shards depend on; shards written under other settings are not reused."""
    fields = (
        "studies",
        "teacher_steps",
        "threshold",
        "teacher_order",
        "top_k",
        "phantom_seed",
        "train_studies",
        "length_buckets",
    )
    return {"teacher_sha256": teacher_sha256, "batch_size": config.batch_size} | {
        name: getattr(config, name) for name in fields
    }


def claim_directory(directory: Path, settings: dict[str, Any]) -> None:
    """Record the rollout settings in ``directory``, or refuse one written under others."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / ROLLOUT_FILE
    if path.is_file():
        found = json.loads(path.read_text())
        changed = sorted(
            k for k in settings.keys() | found.keys() if settings.get(k) != found.get(k)
        )
        if changed:
            raise DiffusionError(
                f"the trajectories in {directory} were written with other {', '.join(changed)}; "
                "point `trajectories` elsewhere or delete that directory"
            )
        return
    path.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")


def write_shards(
    vlm: VLM,
    tokenizer: Tokenizer,
    dataset: Any,
    studies: list[int],
    batch_size: int,
    directory: Path,
    roll: Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]],
    desc: str,
) -> list[Path]:
    """``roll(context, mask)`` over ``studies``, one shard per batch; keeps existing shards."""
    directory.mkdir(parents=True, exist_ok=True)
    shards = []
    for index, first in enumerate(tqdm(range(0, len(studies), batch_size), desc=desc)):
        path = directory / f"shard-{index:05d}.pt"
        shards.append(path)
        if path.is_file():
            continue
        chunk = studies[first : first + batch_size]
        batch = collate([dataset[i] for i in chunk], tokenizer, vlm.config.max_response_tokens)
        rows = batch.groups[0]
        with torch.inference_mode():
            context, mask = vlm.build_context(batch.pixels, rows.prompt_ids, rows.prompt_mask)
            shard = roll(context, mask)
        shard["studies"] = torch.tensor(chunk)
        tmp = path.with_suffix(".tmp")
        torch.save(shard, tmp)
        tmp.replace(path)
    return shards


def rollout_order(
    studies: list[int], dataset: Any, tokenizer: Tokenizer, config: DCDConfig
) -> list[int]:
    """``studies`` in shard order: each group of ``length_buckets`` shards sorted by length."""
    if config.length_buckets == 1:
        return studies
    group = config.batch_size * config.length_buckets
    return [
        study
        for first in range(0, len(studies), group)
        for batch in length_sorted_batches(
            studies[first : first + group], dataset.records, tokenizer, config.batch_size
        )
        for study in batch
    ]


def write_trajectories(
    vlm: VLM,
    tokenizer: Tokenizer,
    dataset: Any,
    config: DCDConfig,
    directory: Path,
    teacher_sha256: str,
) -> list[Path]:
    """Phase 1: the teacher's own rollouts of the first ``config.studies`` studies, resumable."""
    claim_directory(directory, rollout_settings(config, teacher_sha256))
    roll = partial(
        rollout,
        vlm.lm,
        config=config,
        block_size=int(vlm.config.block_size or 0),
        max_new_tokens=vlm.config.max_response_tokens,
    )
    studies = rollout_order(list(range(config.studies)), dataset, tokenizer, config)
    return write_shards(
        vlm, tokenizer, dataset, studies, config.batch_size, directory, roll, "teacher trajectories"
    )


def weights_sha256(module: torch.nn.Module) -> str:
    """A digest of a module's parameters and buffers, by name, in memory."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def write_student_prefix(
    teacher: LlamaForCausalLM,
    student: VLM,
    tokenizer: Tokenizer,
    dataset: Any,
    config: DCDConfig,
    directory: Path,
) -> list[Path]:
    """The student-prefix round's shards: the student writes, the teacher re-writes each block.

    Its studies follow phase 1's (wrapping), so the round also shows the student new images.
    The shards depend on the student's weights, recorded with the settings: a resumed run whose
    student is the same reuses them, one whose student differs is refused.
    """
    settings = {"student_sha256": weights_sha256(student.lm)} | {
        name: getattr(config, name)
        for name in (
            "student_prefix_studies",
            "student_prefix_ngrams",
            "batch_size",
            "length_buckets",
        )
    }
    claim_directory(directory, settings)
    studies = rollout_order(
        [(config.studies + i) % len(dataset) for i in range(config.student_prefix_studies)],
        dataset,
        tokenizer,
        config,
    )
    roll = partial(
        rollout,
        teacher,
        config=config,
        block_size=int(student.config.block_size or 0),
        max_new_tokens=student.config.max_response_tokens,
        prefix_writer=student.lm,
        prefix_prior=OneStepEngine().ngram_prior(student) if config.student_prefix_ngrams else None,
    )
    student.eval()
    try:
        return write_shards(
            student,
            tokenizer,
            dataset,
            studies,
            config.batch_size,
            directory,
            roll,
            "student-prefix rollouts",
        )
    finally:
        student.train()
