"""Stage 3, Direct Conditional Distillation (DCD): one forward per block from a multi-step teacher.

References: ECHO Alg. 1 and sections 4.2-4.3 (``../shared/ECHO_NOTES.md`` section 3).

Phase 1 (:func:`write_trajectories`): the frozen stage-2 teacher writes its own reports with the
multi-step sampler, block by block, conditioned on its own previous blocks. For every generated
position it keeps the distribution at the step the position was committed, its argmax and that
step (:class:`model.sampling.BlockTrace`), and, for the factorized baseline, the distribution the
same position had at step 1 (one noisy state: the fully masked block). Trajectories whose raw
teacher output loops (a block identical to the previous one, or no ``<eos>`` before the cap) are
discarded. Trajectories are precomputed to disk, one shard per teacher batch, because the teacher
is the expensive part (S forwards per block) and a shard on disk makes phase 1 resumable, lets
phase 2 run several epochs without re-running the teacher, and lets the factorized baseline train
on exactly the same rollouts.

Distributions are stored as their top ``top_k`` probabilities plus the remaining mass, so the
KL is computed exactly on the coarsened distribution (top-k tokens + one "rest" bucket); with a
1k vocabulary and k = 32 the rest is typically under 1e-3 of the mass.

Phase 2 (:func:`dcd_loss`): the student (initialised from the teacher) sees the context, the
teacher's blocks as clean blocks and a fully masked copy as noisy blocks, i.e. the RAD layout of
:mod:`model.diffusion` with every response position masked; one forward trains all blocks at once:

    L = sum_i w_i KL(P_teacher_i || p_student_i) / sum_i 1  +  lambda * CE(eos position)

with ``w_i = step_i / mean(step)`` (ECHO's step-wise weighting: late commits depend most on the
tokens committed before them), forward KL, over generated positions up to and including the first
``<eos>`` (decoding truncates there). The factorized baseline swaps the targets for the step-1
marginals and uses uniform weights. Phase 2 snapshots after every epoch, so a killed run resumes.

The student-prefix round (optional, not in ECHO; :class:`DCDConfig`): phase 2 always conditions
the student on the teacher's blocks, but a one-step report conditions on its own. After the
teacher-prefix epochs the student writes reports, the teacher re-writes each of their blocks given
the student's previous ones (:func:`rollout` with ``prefix_writer``), and the student trains on
both sets of targets.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm import tqdm

from model.config import check_report_form
from model.diffusion import (
    DiffusionError,
    check_length_buckets,
    check_precision,
    first_block_start,
    loss_tokens_per_row,
    make_canvas,
    rad_sequence,
    read_recipe,
    response_logits,
    token_count,
    training_autocast,
)
from model.sampling import (
    COMMIT_ORDERS,
    BlockTrace,
    OneStepEngine,
    decode_blocks,
    forced_block,
    special_id,
)

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM

    from model.data.phantom import ReportForm
    from model.report_ngrams import NgramPrior
    from model.tokenizer import Tokenizer
    from model.vlm import VLM

log = logging.getLogger(__name__)
TARGETS = ("conditional", "factorized", "committed")


@dataclass
class DCDConfig:
    """A distillation recipe (``model/configs/dcd-*.json``).

    Parameters
    ----------
    teacher_checkpoint : str
        The stage-2 (RAD) checkpoint; its block size is the student's.
    target : {"conditional", "factorized", "committed"}
        DCD's commit-time targets, or the step-1 marginals of the factorized baseline, or (not
        in ECHO) the token the teacher committed as a one-hot target: sequence-level knowledge
        distillation (Kim and Rush, 2016), the usual remedy of non-autoregressive translation for
        outputs that mix two phrasings. Forward KL asks the student to cover every token the
        teacher gave mass to at a position; the one-hot target asks only for the teacher's
        choice, so it tests whether that covering is what mixes the student's blocks. Measured
        at B = 8 with the shipped schedule (``dcd-committed-b8.json``, 2,000 test studies):
        macro-F1 0.442 against 0.449, novel sentences 31.8% against 36.7%; the rest of the
        mixing is where words land, not which words
        (``benchmarks/results/dcd_committed_target.md``).
    studies : int
        Training studies the teacher rolls out (phase 1).
    teacher_steps : int or None
        S of the teacher sampler; None means S = B.
    threshold : float
        The teacher's confidence threshold (tau). At 0.85 (the shipped recipes) the teacher
        commits several positions from one state and 14% of its reports on 150 test studies have
        garbled runs; at 1.0 (one commit per step, so every target conditions on all the tokens
        committed before it) 4% (``benchmarks/results/teacher_threshold.md``). A student
        distilled from 4,000 tau = 1 rollouts x 4 epochs gained only 0.015 macro-F1 over the
        first shipped one (3 epochs, ``engines_bench.md``) for 86 min of stage 3 on one core
        instead of 11, so 0.85 stays. With the shipped schedule (6 epochs + the round) from the
        uniform-batch teacher, tau = 1 scored 0.455 on 2,000 test studies against 0.459 at 0.85
        (``bench/b8-test2000-batch16-v6-tau1.json``): the teacher's garbled runs are not what
        limits the student (``benchmarks/results/onestep_errors.md``).
    teacher_order : {"confidence", "left-to-right"}
        Which masked positions each teacher step commits (:class:`model.sampling.MultiStepEngine`,
        ``order``). By confidence the teacher fixes the common, often negative, wording of a
        sentence first and misses findings; its students miss 221 pleural effusions on 2,000
        test studies (AR 86). Left to right (``dcd-l2r-b8.json``) two seeds' students miss 103
        and 97, reach micro-F1 (5) 0.670 and 0.689 (AR 0.698, the shipped student 0.636) and
        macro-F1 0.521 and 0.512, with shorter reports and more false effusions; phase 1 takes
        B forwards a block (``benchmarks/results/teacher_order.md``). The shipped student's
        recipe, ``dcd-l2r-ngrams-b8.json``, rolls out left to right.
    top_k : int
        Stored probabilities per position.
    epochs, batch_size, lr : phase-2 schedule (AdamW, constant after warm-up). At B = 8 the
        3-epoch student of the first recipe was undertrained: 6 epochs over the same shards
        scored macro-F1 0.438 against 0.423 (``dcd_schedule.md``).
    eos_weight : float
        lambda of the cross-entropy on the ``<eos>`` position.
    step_weighting : bool
        Weight positions by their commit step (False: uniform).
    trajectories : str or None
        Directory of the phase-1 shards; None means ``OUT/trajectories``. The factorized baseline
        points at the DCD run's shards, so both train on the same rollouts and phase 1 runs once.
    student_prefix_studies : int
        Not in ECHO: a round after the ``epochs`` above (0: none). The student writes this many
        training reports with its own one-step engine; the teacher writes every block again
        conditioned on the student's previous blocks (``OUT/student-prefix``). Free-running, the
        student conditions on its own blocks, which phase 2 never shows it, so its errors
        compound; these targets say how to continue from them (imitation learning's DAgger).
        Measured at B = 8 on 500 test + 500 val studies (``benchmarks/results/dcd_schedule.md``):
        after 3 epochs, a 1,024-study round raised micro-F1 (5) from 0.564 to 0.617 and cut the
        repeat rate from 0.006 to 0.001; after 6 epochs, it raised macro-F1 from 0.438 to 0.457
        and BLEU-4 from 0.201 to 0.215, while the repeat rate went from 0.001 to 0.004 (4
        reports in 1,000 instead of 1). The B = 8 recipes run 6 epochs + the round.
    student_prefix_epochs : int
        Epochs of each round, over the phase-1 shards and every round's so far together.
    student_prefix_ngrams : bool
        The student writes the round's reports under its training reports' n-grams, as the
        default one-step engine writes (:mod:`model.report_ngrams`), instead of by argmax: the
        round shows it the states it visits at inference, and those are the n-gram ones.
        Measured at B = 8 over five stage-3 seeds each (2,000 test studies, decoded under the
        n-grams): macro-F1 0.503 (sd 0.004) against 0.489 (sd 0.013) for the argmax round, +0.014
        a seed with a standard error of 0.005, a quarter of the false pneumothoraces
        (``benchmarks/results/student_prefix_ngrams.md``). The recipes keep False until the
        shipped student (seed 0, where the argmax round's is the better one) is rebuilt with it.
    precision : {"fp32", "bf16"}
        Arithmetic of the student's training forward (:func:`model.diffusion.training_autocast`);
        the teacher's rollouts stay fp32, so its targets do not depend on it.
    student_prefix_rounds : int
        Rounds, each on ``student_prefix_studies`` new studies written by the student as it is
        after the previous round (DAgger's iteration; ``OUT/student-prefix-<round>``). A second
        round after the shipped schedule (rad-b8 teacher of 1,500 steps) lowered macro-F1 on
        2,000 test studies from 0.451 to 0.433 (``benchmarks/results/engines_bench.md``), so the
        recipes run one.
    glance : float
        Not in ECHO: glancing training (GLAT, Qian et al., 2021), 0 for none. Each student step
        first decodes its blocks in one pass without gradient, counts the positions where it
        misses the teacher's committed token, and shows the teacher's token at ``glance`` x that
        many random positions of the row in the second, trained pass; only the hidden positions
        are scored. A student that is still far from the teacher sees more of each block, so it
        learns how a block's words depend on each other before it must write all of them from
        nothing; as it improves, its training input approaches the fully masked block of
        inference. Non-autoregressive translation gains most of the distance to its
        autoregressive teacher in one pass this way; the first pass makes a step 1.24x slower.
        Measured at B = 8 with the shipped schedule (``dcd-glance-b8.json``, 2,000 test
        studies, two seeds): macro-F1 0.450 and 0.429 against 0.449 and 0.450 for the shipped
        recipe's seeds, micro-F1 (5) 0.596 and 0.481; the doubled words stay
        (``benchmarks/results/dcd_glancing.md``), so the recipes keep 0.
    length_buckets : int
        Phase 1 and each round cut their studies into groups of ``length_buckets`` shards and sort
        each group by reference report length before cutting it into shards (1: study order). A
        rollout batch runs until its longest report ends and a student step pads every row to
        the longest trajectory of its shard, so similar lengths save time in both
        (``benchmarks/results/length_buckets.md``). Shard order stays random in every epoch.
        The B = 8 recipes use 8, as :class:`model.diffusion.RADConfig` says why.
    """

    teacher_checkpoint: str = "runs/rad-b8/checkpoint"
    target: str = "conditional"
    studies: int = 1024
    teacher_steps: int | None = None
    threshold: float = 0.85
    teacher_order: str = "confidence"
    top_k: int = 32
    phantom_seed: int = 0
    phantom_reports: ReportForm = "mixed"
    train_studies: int = 4000
    epochs: int = 2
    batch_size: int = 16
    lr: float = 2e-4
    eos_weight: float = 1.0
    step_weighting: bool = True
    trajectories: str | None = None
    student_prefix_studies: int = 0
    student_prefix_epochs: int = 1
    student_prefix_rounds: int = 1
    student_prefix_ngrams: bool = False
    precision: str = "fp32"
    length_buckets: int = 1
    glance: float = 0.0

    def __post_init__(self) -> None:
        check_precision(self.precision)
        check_length_buckets(self.length_buckets)
        check_report_form(self.phantom_reports)
        if self.target not in TARGETS:
            raise DiffusionError(f"target must be one of {TARGETS}, got {self.target!r}")
        if self.teacher_order not in COMMIT_ORDERS:
            raise DiffusionError(
                f"teacher_order must be one of {COMMIT_ORDERS}, got {self.teacher_order!r}"
            )
        if not 0.0 <= self.glance < 1.0:
            raise DiffusionError(f"glance must be in [0, 1), got {self.glance}")
        if self.student_prefix_rounds < 1:
            raise DiffusionError(
                f"student_prefix_rounds must be >= 1, got {self.student_prefix_rounds}; "
                "set student_prefix_studies = 0 for no round"
            )

    @classmethod
    def from_file(cls, path: Path) -> DCDConfig:
        return read_recipe(cls, path, "DCD")


# --------------------------------------------------------------------------------------------
# Phase 1: teacher trajectories


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
        "phantom_reports",
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
    from model.train import collate

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
    from model.train import length_sorted_batches

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
    round_number: int = 1,
) -> list[Path]:
    """A student-prefix round's shards: the student writes, the teacher re-writes each block.

    Its studies follow phase 1's and the earlier rounds' (wrapping), so each round also shows
    the student new images. The shards depend on the student's weights, recorded with the
    settings: a resumed run whose student is the same reuses them, one whose student differs is
    refused.
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
    first = config.studies + (round_number - 1) * config.student_prefix_studies
    studies = rollout_order(
        [(first + i) % len(dataset) for i in range(config.student_prefix_studies)],
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


# --------------------------------------------------------------------------------------------
# Phase 2: the student


def coarse_kl(
    target_ids: torch.Tensor, target_probs: torch.Tensor, student_logits: torch.Tensor
) -> torch.Tensor:
    """KL(target || student) per position on the top-k tokens plus one bucket for the rest."""
    log_q = student_logits.float().log_softmax(-1)
    log_q_top = log_q.gather(-1, target_ids)  # (R, W, k)
    q_rest = (1 - log_q_top.exp().sum(-1, keepdim=True)).clamp(min=1e-8)
    log_q_all = torch.cat([log_q_top, q_rest.log()], -1)  # (R, W, k+1)
    p = target_probs.float()
    return (p * (p.clamp(min=1e-8).log() - log_q_all)).sum(-1)


def one_step_logits(
    lm: LlamaForCausalLM,
    context: torch.Tensor,
    context_mask: torch.Tensor,
    tokens: torch.Tensor,
    *,
    block_size: int,
    mask_id: int,
    eos_id: int,
    glimpse: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The student's one-forward logits for every block of ``tokens`` (R, W), given the blocks
    before it: ``(logits (R, Wc, V), upto (R, Wc))``.

    Every block is fully masked, or, given ``glimpse`` (R, >= Wc), holds its ids wherever they
    are not ``<mask>`` (:func:`glanced_targets`).

    ``upto`` marks the positions up to and including a row's first ``<eos>`` (decoding truncates
    there). Wc <= W: the rollout ran as long as its longest row, which may be a looping row
    filtered out by :func:`kept_rows`; the canvas ends with the remaining rows' last ``<eos>``
    block, and nothing after it is scored.
    """
    W = tokens.shape[1]
    is_eos = tokens == eos_id
    first_eos = torch.where(is_eos.any(1), is_eos.int().argmax(1), W - 1)
    upto = torch.arange(W, device=tokens.device)[None] <= first_eos[:, None]  # (R, W)
    tail = context.shape[1] - first_block_start(context.shape[1], block_size)
    canvas = make_canvas(tokens.masked_fill(~upto, eos_id), upto.long(), tail, block_size, eos_id)
    noisy = torch.full_like(canvas.tokens, mask_id)
    if glimpse is not None:
        noisy = glimpse[:, : noisy.shape[1]]
    logits = response_logits(lm, rad_sequence(lm, context, context_mask, canvas, noisy))[:, :W]
    return logits, upto[:, : logits.shape[1]]


def target_distribution(
    shard: dict[str, torch.Tensor], target: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The student's per-position target as ``(ids (R, W, k), probs (R, W, k + 1))``."""
    if target == "factorized":
        return shard["first_ids"], shard["first_probs"]
    if target == "committed":  # one-hot on the teacher's top-1, nothing in the rest
        committed = shard["commit_ids"][..., :1]
        one_hot = committed.new_zeros(*committed.shape[:2], 2, dtype=shard["commit_probs"].dtype)
        one_hot[..., 0] = 1.0
        return committed, one_hot
    return shard["commit_ids"], shard["commit_probs"]


def dcd_loss(
    lm: LlamaForCausalLM,
    context: torch.Tensor,
    context_mask: torch.Tensor,
    shard: dict[str, torch.Tensor],
    *,
    block_size: int,
    mask_id: int,
    eos_id: int,
    target: str = "conditional",
    step_weighting: bool = True,
    eos_weight: float = 1.0,
    tokens_per_row: float | None = None,
    glance: float = 0.0,
) -> torch.Tensor:
    """Step-weighted forward KL at every generated position + CE on the ``<eos>`` position.

    The KL is averaged over the shard's positions, or, given ``tokens_per_row``, summed and
    divided by rows x that constant (length-bucketed shards, :func:`model.diffusion.rad_loss`).
    With ``glance`` > 0 the positions :func:`glanced_targets` shows are not scored.
    """
    tokens = shard["tokens"]
    student = partial(
        one_step_logits,
        lm,
        context,
        context_mask,
        tokens,
        block_size=block_size,
        mask_id=mask_id,
        eos_id=eos_id,
    )
    glimpse = None
    if glance > 0:
        with torch.no_grad():
            first, upto = student()
        chosen = shard["commit_ids"][:, : upto.shape[1], 0]
        glimpse = glanced_targets(first.argmax(-1), chosen, upto, glance, mask_id)
    logits, upto = student(glimpse=glimpse)  # (R, Wc, V)
    R, Wc = upto.shape
    scored = upto if glimpse is None else upto & (glimpse == mask_id)
    ids, probs = target_distribution(shard, target)
    kl = coarse_kl(ids[:, :Wc], probs[:, :Wc], logits)
    weight = shard["steps"][:, :Wc].float() if step_weighting else torch.ones_like(kl)
    weight = weight * scored / (weight * scored).sum().clamp(min=1e-8) * scored.sum()  # mean 1
    # The <eos> the teacher committed (its top-1), within what the student's report keeps:
    # phase 1's own tokens, or where the teacher would stop after a student's prefix.
    teacher_eos = (shard["commit_ids"][:, :Wc, 0] == eos_id) & scored
    eos_rows = teacher_eos.any(1)
    eos_at = teacher_eos.int().argmax(1)
    eos_logits = logits[torch.arange(R, device=tokens.device), eos_at][eos_rows]
    ce = (
        torch.nn.functional.cross_entropy(
            eos_logits.float(), torch.full((eos_logits.shape[0],), eos_id, device=tokens.device)
        )
        if bool(eos_rows.any())
        else logits.sum() * 0
    )
    return (weight * kl).sum() / token_count(scored, tokens_per_row) + eos_weight * ce


def glanced_targets(
    predicted: torch.Tensor, chosen: torch.Tensor, upto: torch.Tensor, glance: float, mask_id: int
) -> torch.Tensor:
    """GLAT's input (R, W): the teacher's ``chosen`` ids at ``ceil(glance x misses)`` random
    positions of each row, ``<mask>`` elsewhere, where misses are the positions within ``upto``
    at which the student's one-pass ``predicted`` ids differ from ``chosen``."""
    misses = ((predicted != chosen) & upto).sum(1)  # (R,)
    shown = torch.ceil(glance * misses).long()
    # random order of each row's positions within upto, the others after them
    order = torch.rand(upto.shape, device=upto.device).masked_fill(~upto, 2.0).argsort(1)
    rank = order.argsort(1)  # (R, W) place of each position in that order
    return torch.where(rank < shown[:, None], chosen, mask_id)


def kept_rows(shard: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    keep = shard["keep"]
    return {name: value[keep] for name, value in shard.items()}


def distill(
    config: DCDConfig, out: Path, cache_root: Path, seed: int = 0, stop_after: int | None = None
) -> Path | None:
    """Phase 1 (resumable, shards in ``trajectories``) then phase 2 (resumable after each epoch,
    ``dcd_state.pt``); exports ``out/checkpoint``. ``stop_after`` epochs simulates a kill."""
    from model.checkpoint import load_checkpoint, save_checkpoint
    from model.diffusion import continue_as_stage, stage_one_studies
    from model.report_ngrams import ReportNgrams
    from model.train import data_hash, save_state

    teacher = load_checkpoint(Path(config.teacher_checkpoint))
    vlm, tokenizer = teacher.vlm, teacher.tokenizer
    if vlm.config.block_size is None:
        raise DiffusionError(
            f"{config.teacher_checkpoint} is an AR checkpoint; DCD needs the stage-2 (RAD) teacher"
        )
    block_size = vlm.config.block_size
    dataset = stage_one_studies(config, cache_root, vlm.config.image_size, seed)
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
        autocast=training_autocast(vlm.lm, config.precision),
        tokens_per_row=loss_tokens_per_row(config.length_buckets, dataset.records, tokenizer),
    )
    rounds: dict[int, list[Path]] = {}
    for prefix in epoch_plan(config)[len(history) :]:
        shards = list(phase_1)
        for number in range(1, round_number(prefix) + 1):
            if number not in rounds:
                rounds[number] = student_prefix_shards(
                    config, vlm, tokenizer, dataset, out, history, number
                )
            shards += rounds[number]
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
    return save_checkpoint(
        out / "checkpoint",
        vlm,
        tokenizer,
        model_id=f"echocxr-dcd-b{block_size}-{out.name}",
        data_sha256=data_hash((dataset.directory,)),
        metrics=metrics,
    )


TEACHER_PREFIX, STUDENT_PREFIX = "teacher prefix", "student prefix"
STATE_FILE = "dcd_state.pt"


def epoch_plan(config: DCDConfig) -> list[str]:
    """Phase 2's epochs in order, by the prefix their newest shards condition on."""
    rounds = config.student_prefix_rounds if config.student_prefix_studies else 0
    return [TEACHER_PREFIX] * config.epochs + [
        f"{STUDENT_PREFIX} {number}"
        for number in range(1, rounds + 1)
        for _ in range(config.student_prefix_epochs)
    ]


def round_number(prefix: str) -> int:
    """0 for a teacher-prefix epoch, else the student-prefix round the epoch belongs to."""
    return 0 if prefix == TEACHER_PREFIX else int(prefix.rsplit(" ", 1)[1])


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
    number: int,
) -> list[Path]:
    """Round ``number``'s shards: written now, or, when the run is already past the round's
    first epoch (the student has moved on since it wrote them), the ones on disk."""
    from model.checkpoint import load_checkpoint

    directory = out / f"student-prefix-{number}"
    if any(round_number(entry["prefix"]) == number for entry in history):
        return sorted(directory.glob("shard-*.pt"))
    teacher = load_checkpoint(Path(config.teacher_checkpoint)).vlm.lm.eval()
    return write_student_prefix(teacher, vlm, tokenizer, dataset, config, directory, number)


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
    autocast: torch.autocast,
    tokens_per_row: float | None = None,
) -> float:
    """One optimizer step of the student on the kept rows of one shard."""
    from model.train import clipped_step, collate

    batch = collate(
        [dataset[int(i)] for i in shard["studies"]], tokenizer, vlm.config.max_response_tokens
    )
    rows = batch.groups[0]
    with torch.no_grad():
        visual = vlm.embed_images(batch.pixels)
    context, mask = vlm.assemble_context(visual, rows.prompt_ids, rows.prompt_mask)
    with autocast:
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
            glance=config.glance,
        )
    clipped_step(loss, optimizer, vlm.lm.parameters())
    return float(loss.item())
