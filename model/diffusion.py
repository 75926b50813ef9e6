"""Stage 2, Response-Asymmetric Diffusion (RAD): the AR model learns to denoise blocks of B tokens.

References: ECHO (``../shared/ECHO_NOTES.md`` sections 2 and 4), MDLM for the 1/t-weighted
masked-diffusion loss. The training sequence and its attention rule are :mod:`model.blocks`.

Noise: ``t ~ U(t_min, 1]`` drawn per block (each block is its own diffusion conditional in BD3-LM,
and per-block draws put both nearly clean and fully masked blocks in every sequence, the latter
being what one-step decoding needs); each response token of the block is masked with probability
``t`` and its cross-entropy weighted ``1/t``. ``t_min = 0.1`` clips the weight at 10: smaller
rates add variance and teach little the later stages use. The loss is the weighted sum divided by
the number of supervised tokens (LLaDA's length normalisation); the ``<eos>`` fill of the last
block is supervised too.

This module also holds what stages 2 and 3 share: reading a recipe, the stage-1 training split
they train on again, length-bucketed batches' loss divisor, and relabelling a loaded model.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
import torch.nn.functional as F

from model.blocks import (
    Canvas,
    DiffusionError,
    first_block_start,
    make_canvas,
    rad_sequence,
    response_logits,
    token_count,
)
from model.checkpoint import load_checkpoint, save_checkpoint
from model.data.datasets import StudyDataset, StudyRecord, phantom_cache
from model.report_ngrams import ReportNgrams
from model.train import (
    Batch,
    clipped_step,
    collate,
    data_hash,
    length_sorted_batches,
    lr_at,
    make_optimizer,
    mean_report_tokens,
    save_state,
)

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM

    from model.tokenizer import Tokenizer
    from model.vlm import VLM

log = logging.getLogger(__name__)
STATE_FILE = "rad_state.pt"
Recipe = TypeVar("Recipe")


def sample_noise(
    canvas: Canvas, t_min: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``t`` per (row, block) and the masked positions; returns ``(masked (R,W), t (R,W))``."""
    R, device = canvas.tokens.shape[0], canvas.tokens.device
    n_blocks = (canvas.tail + canvas.width) // canvas.block_size
    t_block = t_min + (1 - t_min) * (
        1 - torch.rand(R, n_blocks, generator=generator, device=device)
    )  # (t_min, 1]
    t = t_block[:, canvas.block_index()]  # (R, W)
    masked = (torch.rand(t.shape, generator=generator, device=device) < t) & canvas.supervised
    return masked, t


def rad_loss(
    lm: LlamaForCausalLM,
    context_embeds: torch.Tensor,
    context_mask: torch.Tensor,
    response_ids: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    block_size: int,
    mask_id: int,
    eos_id: int,
    t_min: float = 0.1,
    generator: torch.Generator | None = None,
    tokens_per_row: float | None = None,
) -> torch.Tensor:
    """The 1/t-weighted masked-diffusion loss of one RAD forward (module docstring).

    The weighted sum is divided by the batch's supervised tokens, or, given ``tokens_per_row``,
    by rows x that constant, which length-bucketed batches need
    (:func:`model.train.mean_report_tokens`).
    """
    tail = context_embeds.shape[1] - first_block_start(context_embeds.shape[1], block_size)
    canvas = make_canvas(response_ids, response_mask, tail, block_size, eos_id)
    masked, t = sample_noise(canvas, t_min, generator)
    noisy = canvas.tokens.masked_fill(masked, mask_id)
    logits = response_logits(lm, rad_sequence(lm, context_embeds, context_mask, canvas, noisy))
    ce = F.cross_entropy(logits.float().flatten(0, 1), canvas.tokens.flatten(), reduction="none")
    weighted = (ce.view_as(t) / t) * masked
    return weighted.sum() / token_count(canvas.supervised, tokens_per_row)


# --------------------------------------------------------------------------------------------
# The stage-2 training run (``echocxr train-rad``)


@dataclass
class RADConfig:
    """A RAD recipe (``model/configs/rad-*.json``): start checkpoint, block size and schedule.

    The four fields without a default say which run a recipe is; the others default to what
    every shipped recipe uses.

    Parameters
    ----------
    init_checkpoint : str
        The stage-1 (AR) checkpoint directory the run starts from, or a RAD checkpoint to train
        further with a fresh schedule (a warm restart: ``rad-b8-start.json`` then ``rad-b8.json``
        make the shipped teacher, ``docs/decisions/004-rad-warm-restart.md``), at its own block
        size or at the one ``init_block_size`` names.
    block_size : int
        B; the weights do not depend on it.
    steps, lr : the length and peak rate of the AdamW schedule (warm-up, cosine to 10%).
    init_block_size : int or None
        The block size of a RAD ``init_checkpoint`` trained at another B, named in the recipe so
        that a changed block size is a choice, never a mistyped path (``rad-b4.json`` continues
        the B = 8 teacher at B = 4).
    batch_size, warmup_steps, weight_decay : the rest of the schedule.
    t_min : float
        Lower end of the mask rate, which caps the 1/t weight.
    train_studies, phantom_seed : the phantom training split (that of stage 1).
    eval_every : int
        Steps between resumable snapshots and log lines.
    length_buckets : int
        Each step draws ``length_buckets`` batches' worth of studies, sorts them by report length
        and trains on one of the resulting batches, chosen at random: every study is still drawn
        with the same probability, but a batch pads its reports to a similar length (1: a uniform
        batch). The loss then divides by a constant per row, not by the batch's token count
        (:func:`model.train.mean_report_tokens`); ``docs/decisions/005-length-buckets.md``.
    """

    init_checkpoint: str
    block_size: int
    steps: int
    lr: float
    init_block_size: int | None = None
    batch_size: int = 16
    warmup_steps: int = 20
    weight_decay: float = 0.05
    t_min: float = 0.1
    train_studies: int = 4000
    phantom_seed: int = 0
    eval_every: int = 250
    length_buckets: int = 8

    def __post_init__(self) -> None:
        check_length_buckets(self.length_buckets)

    @classmethod
    def from_file(cls, path: Path) -> RADConfig:
        return read_recipe(cls, path, "RAD")


def stage_one_studies(
    phantom_seed: int, train_studies: int, cache_root: Path, image_size: int, seed: int
) -> StudyDataset:
    """The phantom training split of stage 1, which stages 2 and 3 train on again."""
    cache = phantom_cache(cache_root, phantom_seed, train_studies, "train", image_size)
    return StudyDataset(cache, qa_per_study=0, seed=seed)


def read_recipe(recipe: type[Recipe], path: Path, what: str) -> Recipe:
    """Build a recipe dataclass from JSON; a missing file, bad JSON, or a key that is unknown
    (a typo, or an option since removed) or missing is named with the keys a recipe takes."""
    if not Path(path).is_file():
        raise DiffusionError(f"{what} config {path} does not exist")
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise DiffusionError(f"invalid {what} config {path}: {err}") from err
    keys = {f.name: f for f in fields(recipe)}  # type: ignore[arg-type]
    required = [name for name, f in keys.items() if f.default is MISSING]
    unknown = sorted(set(data) - set(keys))
    missing = [name for name in required if name not in data]
    if unknown or missing:
        problem = f"unknown key {unknown}" if unknown else f"missing key {missing}"
        raise DiffusionError(
            f"invalid {what} config {path}: {problem}; a {what} recipe takes "
            f"{', '.join(keys)} ({', '.join(required) or 'none'} required)"
        )
    return recipe(**data)


def check_length_buckets(length_buckets: int) -> None:
    if length_buckets < 1:
        raise DiffusionError(f"length_buckets must be >= 1, got {length_buckets}")


def loss_tokens_per_row(
    length_buckets: int, records: Sequence[StudyRecord], tokenizer: Tokenizer
) -> float | None:
    """What a stage 2-3 loss divides by per row: None (the batch's own token count) for uniform
    batches, the training set's mean report length for length-bucketed ones."""
    return mean_report_tokens(records, tokenizer) if length_buckets > 1 else None


def batch_loss(
    vlm: VLM,
    batch: Batch,
    tokenizer: Tokenizer,
    config: RADConfig,
    tokens_per_row: float | None = None,
) -> torch.Tensor:
    """RAD loss of the report rows of a batch (vision and projector frozen, ECHO section 1)."""
    rows = batch.groups[0]  # the report rows; RAD trains no Q&A turns
    with torch.no_grad():
        visual = vlm.embed_images(batch.pixels)[rows.image_index]
    context, context_mask = vlm.assemble_context(visual, rows.prompt_ids, rows.prompt_mask)
    return rad_loss(
        vlm.lm,
        context,
        context_mask,
        rows.response_ids,
        rows.response_mask,
        block_size=config.block_size,
        mask_id=tokenizer.mask_id,
        eos_id=tokenizer.eos_id,
        t_min=config.t_min,
        tokens_per_row=tokens_per_row,
    )


def rad_batch(
    dataset: StudyDataset,
    tokenizer: Tokenizer,
    config: RADConfig,
    max_response_tokens: int,
    seed: int,
    step: int,
) -> Batch:
    """The batch of training step ``step``; also seeds torch's generator for that step's noise.

    Both depend on (seed, step) only, so a resumed run draws what the uninterrupted one did.
    """
    key = seed * 100_003 + step
    generator = torch.Generator().manual_seed(key)
    order = torch.randperm(len(dataset), generator=generator)
    studies = order[: config.batch_size].tolist()
    if config.length_buckets > 1:
        pool = order[: config.batch_size * config.length_buckets].tolist()
        batches = length_sorted_batches(pool, dataset.records, tokenizer, config.batch_size)
        studies = batches[int(torch.randint(len(batches), (1,), generator=generator))]
    batch = collate([dataset[i] for i in studies], tokenizer, max_response_tokens)
    torch.manual_seed(key)  # the noise draw of this step
    return batch


def rad_step(
    vlm: VLM,
    batch: Batch,
    tokenizer: Tokenizer,
    config: RADConfig,
    optimizer: torch.optim.Optimizer,
    tokens_per_row: float | None = None,
) -> float:
    """One optimizer step on one batch (clipped gradients); its loss."""
    loss = batch_loss(vlm, batch, tokenizer, config, tokens_per_row)
    clipped_step(loss, optimizer, vlm.parameters())
    return float(loss.item())


def continue_as_stage(vlm: VLM, stage: str, block_size: int) -> None:
    """Relabel a loaded model for a diffusion stage; the weights are unchanged."""
    vlm.config.stage = stage
    vlm.config.block_size = block_size
    for part in (vlm.vision, vlm.projector):
        part.requires_grad_(False)


def check_rad_start(stage: str, block_size: int | None, config: RADConfig) -> None:
    """Stage 2 starts from the AR model or continues a RAD model of the block size expected."""
    expected = config.block_size if config.init_block_size is None else config.init_block_size
    if stage == "rad" and block_size != expected:
        raise DiffusionError(
            f"{config.init_checkpoint} is a RAD checkpoint with block size {block_size}; "
            f"the recipe continues from block size {expected} (set init_block_size to "
            "change the block size on purpose)"
        )
    if stage not in ("ar", "rad"):
        raise DiffusionError(
            f"{config.init_checkpoint} is a {stage} checkpoint; stage 2 starts from the AR "
            "checkpoint or continues a RAD one"
        )


def train_rad(
    config: RADConfig, out: Path, cache_root: Path, seed: int = 0, stop_after: int | None = None
) -> Path | None:
    """Run (or resume) stage 2 from the AR checkpoint; export ``out/checkpoint`` at the end.

    Resumable like stage 1: a snapshot (weights, optimizer, step) is written atomically every
    ``eval_every`` steps and batches depend only on (seed, step), so a resumed run matches.
    """
    loaded = load_checkpoint(Path(config.init_checkpoint))
    vlm, tokenizer = loaded.vlm, loaded.tokenizer
    check_rad_start(vlm.config.stage, vlm.config.block_size, config)
    continue_as_stage(vlm, "rad", config.block_size)
    dataset = stage_one_studies(
        config.phantom_seed, config.train_studies, cache_root, vlm.config.image_size, seed
    )
    tokens_per_row = loss_tokens_per_row(config.length_buckets, dataset.records, tokenizer)
    optimizer = make_optimizer(vlm, config.lr, config.weight_decay)
    out.mkdir(parents=True, exist_ok=True)
    step, history = 0, []
    state_path = out / STATE_FILE
    if state_path.is_file():
        state = torch.load(state_path, weights_only=False)
        vlm.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, history = state["step"], state["history"]
        log.info("resumed RAD from step %d", step)
    vlm.train()
    start, running = time.perf_counter(), float("nan")
    while step < config.steps:
        batch = rad_batch(dataset, tokenizer, config, vlm.config.max_response_tokens, seed, step)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config.steps, config.lr, config.warmup_steps)
        loss = rad_step(vlm, batch, tokenizer, config, optimizer, tokens_per_row)
        step += 1
        running = loss if math.isnan(running) else 0.9 * running + 0.1 * loss
        if step % config.eval_every == 0 or step == config.steps:
            history.append(
                {
                    "step": step,
                    "loss": round(running, 4),
                    "seconds": round(time.perf_counter() - start, 1),
                }
            )
            log.info("RAD step %d loss %.4f", step, running)
            save_state(
                state_path,
                {
                    "model": vlm.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "step": step,
                    "history": history,
                },
            )
        if stop_after is not None and step >= stop_after:
            return None
    vlm.report_ngrams = ReportNgrams.of_texts((r.report_text for r in dataset.records), tokenizer)
    metrics: dict[str, Any] = {"rad_history": history, "rad_config": asdict(config), "seed": seed}
    return export_run(vlm, tokenizer, out, dataset, metrics)


def export_run(
    vlm: VLM, tokenizer: Tokenizer, out: Path, dataset: StudyDataset, metrics: dict[str, Any]
) -> Path:
    """A stage 2-3 run's checkpoint, ``out/checkpoint``, named after its stage, B and run."""
    return save_checkpoint(
        out / "checkpoint",
        vlm,
        tokenizer,
        model_id=f"echocxr-{vlm.config.stage}-b{vlm.config.block_size}-{out.name}",
        data_sha256=data_hash((dataset.directory,)),
        metrics=metrics,
    )
