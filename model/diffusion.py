"""Stage 2, Response-Asymmetric Diffusion (RAD): the AR model learns to denoise blocks of B tokens.

References: ECHO (``../shared/ECHO_NOTES.md`` sections 2 and 4) for the asymmetric layout, BD3-LM
(``block_diff_mask`` in kuleshov-group/bd3lms) for the vectorised noisy/clean training sequence,
MDLM for the 1/t-weighted masked-diffusion loss.

One training row is laid out as::

    [ context[:s0] | tail  noisy response | tail  clean response ]
      positions 0..s0-1   s0 ...              s0 ... (same ids as the noisy copy)

``s0`` is the last multiple of B at or before the context length ``Lc``: blocks sit at absolute
positions and the last ``Lc - s0`` context tokens (the prompt tail) share the first block with the
response, exactly as the decoding engines in :mod:`model.sampling` place them. Only the response
is duplicated; the long visual context is encoded once, which is the RAD saving.

Who may attend to whom is one rule, :func:`attention_bias`, shared by training and every engine so
the two cannot drift apart:

- a clean token (context or clean response) sees clean tokens of its own block and earlier blocks;
- a noisy token sees clean tokens of earlier blocks and every noisy token of its own block;
- nobody sees padding, and clean tokens never see noisy ones.

Noise: ``t ~ U(t_min, 1]`` drawn per block (each block is its own diffusion conditional in BD3-LM,
and per-block draws put both nearly clean and fully masked blocks in every sequence, the latter
being what one-step decoding needs); each response token of the block is masked with probability
``t`` and its cross-entropy weighted ``1/t``. ``t_min = 0.1`` clips the weight at 10: smaller
rates add variance and teach little the later stages use. The loss is the weighted sum divided by
the number of supervised tokens (LLaDA's length normalisation). After ``<eos>`` the rest of its
block is filled with ``<eos>`` and supervised, since decoding commits a whole block and stops at
the first ``<eos>`` in it; blocks after it are padding.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
import torch.nn.functional as F

from model.config import check_report_form

if TYPE_CHECKING:
    from collections.abc import Sequence

    from transformers import LlamaForCausalLM

    from model.data.datasets import StudyDataset, StudyRecord
    from model.data.phantom import ReportForm
    from model.distill import DCDConfig
    from model.tokenizer import Tokenizer
    from model.train import Batch
    from model.vlm import VLM

log = logging.getLogger(__name__)
STATE_FILE = "rad_state.pt"
Recipe = TypeVar("Recipe")


class DiffusionError(ValueError):
    """Inputs that the block-diffusion layout cannot represent (empty response, bad block size)."""


def first_block_start(context_len: int, block_size: int) -> int:
    """``s0``: the block boundary at or before the end of the context (prompt tail after it)."""
    if block_size < 1:
        raise DiffusionError(f"block_size must be >= 1, got {block_size}")
    return (context_len // block_size) * block_size


def attention_bias(
    q_pos: torch.Tensor,
    q_noisy: torch.Tensor,
    k_pos: torch.Tensor,
    k_noisy: torch.Tensor,
    k_valid: torch.Tensor,
    block_size: int,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Additive attention mask ``(R, 1, Q, K)`` of the block-diffusion rule (module docstring).

    Additive floats rather than booleans because transformers' eager attention adds the mask to the
    scores (a bool mask would be added as 0/1), while sdpa accepts either. ``finfo.min`` rather than
    ``-inf`` keeps a row with no visible key (a left pad) finite instead of NaN.

    Parameters
    ----------
    q_pos, q_noisy : (Q,) absolute positions of the queries and whether each is a noisy token.
    k_pos, k_noisy : (K,) the same for the keys.
    k_valid : (R, K) bool, False for padding keys.
    """
    q_block, k_block = (
        (q_pos // block_size)[:, None],
        (k_pos // block_size)[None, :],
    )  # (Q,1), (1,K)
    q_noisy, k_noisy = q_noisy[:, None], k_noisy[None, :]
    clean_to_clean = ~q_noisy & ~k_noisy & (k_block <= q_block)
    noisy_to_clean = q_noisy & ~k_noisy & (k_block < q_block)
    noisy_to_own_block = q_noisy & k_noisy & (k_block == q_block)
    allowed = (clean_to_clean | noisy_to_clean | noisy_to_own_block)[None] & k_valid[
        :, None, :
    ]  # (R,Q,K)
    bias = torch.zeros(allowed.shape, dtype=dtype, device=k_valid.device)
    return bias.masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]  # (R, 1, Q, K)


@dataclass
class Canvas:
    """Responses cut into whole blocks after the prompt tail, as the engines will write them.

    ``tokens`` (R, W) holds the response with ``<eos>`` filling the rest of its block; ``valid``
    marks the positions that are part of some row's blocks; ``supervised`` the positions a loss may
    use (``valid`` minus rows truncated without ``<eos>``, whose fill would be invented).
    W = n_blocks * B - tail.
    """

    tokens: torch.Tensor
    valid: torch.Tensor
    supervised: torch.Tensor
    tail: int
    block_size: int

    @property
    def width(self) -> int:
        return int(self.tokens.shape[1])

    def block_index(self) -> torch.Tensor:
        """(W,) the block number of each canvas position, the first block being 0."""
        return (torch.arange(self.width, device=self.tokens.device) + self.tail) // self.block_size


def make_canvas(
    response_ids: torch.Tensor, response_mask: torch.Tensor, tail: int, block_size: int, eos_id: int
) -> Canvas:
    """Lay right-padded responses ``(R, Lr)`` (ending in ``<eos>``) onto whole blocks."""
    lengths = response_mask.sum(1)  # (R,)
    if bool((lengths == 0).any()):
        raise DiffusionError("every row needs at least one response token")
    n_blocks = math.ceil((tail + int(lengths.max())) / block_size)
    width = n_blocks * block_size - tail
    R, Lr = response_ids.shape
    tokens = torch.full((R, width), eos_id, dtype=torch.long, device=response_ids.device)
    tokens[:, : min(Lr, width)] = response_ids[:, :width]
    j = torch.arange(width, device=response_ids.device)[None]  # (1, W)
    real = j < lengths[:, None]
    tokens = torch.where(real, tokens, eos_id)
    row_end = ((tail + lengths - 1) // block_size + 1) * block_size - tail  # (R,) end of eos block
    valid = j < row_end[:, None]
    ends_in_eos = response_ids.gather(1, (lengths - 1)[:, None]).squeeze(1) == eos_id  # (R,)
    supervised = real | (valid & ends_in_eos[:, None])
    return Canvas(tokens, valid, supervised, tail, block_size)


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


@dataclass
class RADSequence:
    """One RAD forward's inputs and where the noisy response sits in it."""

    inputs_embeds: torch.Tensor  # (R, s0 + 2 (tail + W), D)
    attention_bias: torch.Tensor  # (R, 1, L, L)
    position_ids: torch.Tensor  # (1, L)
    noisy_slice: slice  # the W noisy response positions (after the noisy tail)


def rad_sequence(
    lm: LlamaForCausalLM,
    context_embeds: torch.Tensor,
    context_mask: torch.Tensor,
    canvas: Canvas,
    noisy_tokens: torch.Tensor,
) -> RADSequence:
    """Assemble ``[context[:s0] | tail noisy | tail clean]`` with its mask and shared positions.

    ``noisy_tokens`` (R, W) is the canvas with ``<mask>`` at the noised positions (DCD passes a
    fully masked canvas).
    """
    Lc = context_embeds.shape[1]
    s0 = Lc - canvas.tail
    embed = lm.get_input_embeddings()
    tail = context_embeds[:, s0:]
    inputs = torch.cat(
        [context_embeds[:, :s0], tail, embed(noisy_tokens), tail, embed(canvas.tokens)], 1
    )
    span = canvas.tail + canvas.width
    device = context_embeds.device
    response_pos = torch.arange(s0, s0 + span, device=device)
    positions = torch.cat([torch.arange(s0, device=device), response_pos, response_pos])
    noisy = torch.zeros(positions.shape[0], dtype=torch.bool, device=device)
    noisy[s0 : s0 + span] = True
    tail_valid = context_mask[:, s0:].bool()
    response_valid = torch.cat([tail_valid, canvas.valid], 1)  # (R, span)
    valid = torch.cat([context_mask[:, :s0].bool(), response_valid, response_valid], 1)
    bias = attention_bias(
        positions, noisy, positions, noisy, valid, canvas.block_size, context_embeds.dtype
    )
    start = s0 + canvas.tail
    return RADSequence(inputs, bias, positions[None], slice(start, start + canvas.width))


def response_logits(lm: LlamaForCausalLM, sequence: RADSequence) -> torch.Tensor:
    """Run the LM once and project only the noisy response positions: ``(R, W, V)``."""
    hidden = lm.model(
        inputs_embeds=sequence.inputs_embeds,
        attention_mask=sequence.attention_bias,
        position_ids=sequence.position_ids,
        use_cache=False,  # one pass over the whole layout: a KV cache would only cost memory
    ).last_hidden_state
    # fp32 logits under bf16 autocast: bf16 keeps 8 bits of mantissa, so a logit near 10 would
    # move in steps of 0.06 and the KL / cross-entropy gradient with it.
    with torch.autocast(hidden.device.type, enabled=False):
        return lm.lm_head(hidden[:, sequence.noisy_slice].float())


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


def token_count(counted: torch.Tensor, tokens_per_row: float | None) -> torch.Tensor | float:
    """The divisor of a per-token loss over ``counted`` (R, W): its count, or R x a constant."""
    if tokens_per_row is None:
        return counted.sum().clamp(min=1)
    return counted.shape[0] * tokens_per_row


# --------------------------------------------------------------------------------------------
# The stage-2 training run (``echocxr train-rad``)


@dataclass
class RADConfig:
    """A RAD recipe (``model/configs/rad-*.json``): start checkpoint, block size and schedule.

    Parameters
    ----------
    init_checkpoint : str
        The stage-1 (AR) checkpoint directory the run starts from, or a RAD checkpoint of the
        same block size to train further with a fresh schedule (a warm restart), or of the
        block size ``init_block_size`` names. ``rad-b8.json``
        then ``rad-b8-more.json`` make the shipped teacher: with uniform batches, 1,000 more
        steps at half the peak rate raised macro-F1 on 2,000 test studies from 0.478 to 0.524
        (AR: 0.531).
    block_size : int
        B; 4, 8 and 16 differ only in this field.
    steps, batch_size, lr, warmup_steps, weight_decay : the AdamW schedule (cosine to 10%).
    init_block_size : int or None
        The block size of a RAD ``init_checkpoint`` trained at another B, named in the recipe so
        that a changed block size is a choice, never a mistyped path: the weights do not depend
        on B, so a B = 16 teacher can start from the B = 8 one instead of from the AR model.
    t_min : float
        Lower end of the mask rate, which caps the 1/t weight.
    train_studies, phantom_seed, phantom_reports : the phantom training split (that of stage 1).
    eval_every : int
        Steps between resumable snapshots and log lines.
    precision : {"fp32", "bf16"}
        Arithmetic of the training forward (:func:`training_autocast`).
    length_buckets : int
        Each step draws ``length_buckets`` batches' worth of studies, sorts them by report length
        and trains on one of the resulting batches, chosen at random: every study is still drawn
        with the same probability, but a batch pads its reports to a similar length (1: a uniform
        batch). The loss then divides by a constant per row, not by the batch's token count
        (:func:`model.train.mean_report_tokens`). At 8, a step on two threads took 0.70 s
        instead of 1.06 s (``benchmarks/results/length_buckets.md``), and the B = 8 chain of
        stages 2 + 3 takes 56 min instead of ~85, under the hour the project allows it, so the
        B = 8 recipes use 8. Its teacher scored 0.493 macro-F1 against 0.524 for the uniform
        recipe's seeds 0/1 and 0.498 for its seeds 2/3: within seed spread
        (``benchmarks/results/stages_2_3_time.md``).
    """

    init_checkpoint: str = "model/checkpoints/ar-tiny"
    block_size: int = 8
    init_block_size: int | None = None
    steps: int = 300
    batch_size: int = 16
    lr: float = 3e-4
    warmup_steps: int = 20
    weight_decay: float = 0.05
    t_min: float = 0.1
    train_studies: int = 4000
    phantom_seed: int = 0
    phantom_reports: ReportForm = "mixed"
    eval_every: int = 50
    precision: str = "fp32"
    length_buckets: int = 1

    def __post_init__(self) -> None:
        check_precision(self.precision)
        check_length_buckets(self.length_buckets)
        check_report_form(self.phantom_reports)

    @classmethod
    def from_file(cls, path: Path) -> RADConfig:
        return read_recipe(cls, path, "RAD")


def stage_one_studies(
    recipe: RADConfig | DCDConfig, cache_root: Path, image_size: int, seed: int
) -> StudyDataset:
    """The phantom training split of stage 1, which stages 2 and 3 train on again."""
    from model.data.datasets import StudyDataset, phantom_cache

    cache = phantom_cache(
        cache_root,
        recipe.phantom_seed,
        recipe.train_studies,
        "train",
        image_size,
        recipe.phantom_reports,
    )
    return StudyDataset(cache, qa_per_study=0, seed=seed)


def read_recipe(recipe: type[Recipe], path: Path, what: str) -> Recipe:
    """Build a recipe dataclass from JSON; a missing file, bad JSON or unknown key is named."""
    if not Path(path).is_file():
        raise DiffusionError(f"{what} config {path} does not exist")
    try:
        return recipe(**json.loads(Path(path).read_text()))
    except (json.JSONDecodeError, TypeError) as err:
        raise DiffusionError(f"invalid {what} config {path}: {err}") from err


PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise DiffusionError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def check_length_buckets(length_buckets: int) -> None:
    if length_buckets < 1:
        raise DiffusionError(f"length_buckets must be >= 1, got {length_buckets}")


def loss_tokens_per_row(
    length_buckets: int, records: Sequence[StudyRecord], tokenizer: Tokenizer
) -> float | None:
    """What a stage 2-3 loss divides by per row: None (the batch's own token count) for uniform
    batches, the training set's mean report length for length-bucketed ones."""
    from model.train import mean_report_tokens

    return mean_report_tokens(records, tokenizer) if length_buckets > 1 else None


def training_autocast(lm: LlamaForCausalLM, precision: str) -> torch.autocast:
    """The context a training forward of stages 2 and 3 runs in (CPU).

    At "bf16", the transformer's matrix products run in bfloat16 while weights, optimizer state,
    the output projection (:func:`response_logits`), softmax and loss stay fp32: with this
    machine's AMX units a RAD step runs 1.7-1.8x faster
    (``benchmarks/results/training_precision.md``). On a CPU without native bf16 (no AVX512-BF16
    or AMX) it would be slower. PyTorch's CPU sdpa kernel is slower in bf16 than in fp32 with
    our additive mask, so "bf16" also switches the LM to transformers' eager attention, which
    applies the same bias. The shipped recipes stay fp32: a bf16 chain scored lower
    (``benchmarks/results/stages_2_3_time.md``).
    """
    check_precision(precision)
    if precision == "bf16":
        lm.set_attn_implementation("eager")
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


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
    from model.train import collate, length_sorted_batches

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
    autocast: torch.autocast,
    tokens_per_row: float | None = None,
) -> float:
    """One optimizer step on one batch (forward under ``autocast``, clipped gradients); its loss."""
    from model.train import clipped_step

    with autocast:
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
    from model.checkpoint import load_checkpoint, save_checkpoint
    from model.config import TrainConfig
    from model.report_ngrams import ReportNgrams
    from model.train import data_hash, lr_at, make_optimizer, save_state

    loaded = load_checkpoint(Path(config.init_checkpoint))
    vlm, tokenizer = loaded.vlm, loaded.tokenizer
    check_rad_start(vlm.config.stage, vlm.config.block_size, config)
    continue_as_stage(vlm, "rad", config.block_size)
    schedule = TrainConfig(
        model=vlm.config,
        lr=config.lr,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_steps,
    )
    dataset = stage_one_studies(config, cache_root, vlm.config.image_size, seed)
    tokens_per_row = loss_tokens_per_row(config.length_buckets, dataset.records, tokenizer)
    optimizer = make_optimizer(vlm, schedule)
    autocast = training_autocast(vlm.lm, config.precision)
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
            group["lr"] = lr_at(step, config.steps, schedule)
        loss = rad_step(vlm, batch, tokenizer, config, optimizer, autocast, tokens_per_row)
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
    return save_checkpoint(
        out / "checkpoint",
        vlm,
        tokenizer,
        model_id=f"echocxr-rad-b{config.block_size}-{out.name}",
        data_sha256=data_hash((dataset.directory,)),
        metrics=metrics,
    )
