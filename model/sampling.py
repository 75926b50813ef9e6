"""Block-diffusion decoding: the multi-step sampler (the DCD teacher) and the one-step engine.

Both write the response block by block, B tokens per block, at the absolute block positions that
RAD training uses (:mod:`model.diffusion`): the prompt tail sits, unmasked, at the start of the
first block. Per block:

1. the block starts fully masked; each forward predicts every masked position;
2. a step commits every masked position whose confidence reaches ``threshold``, and at least the
   ``k = ceil(masked / steps_left)`` most confident ones (ECHO's "low_confidence_dynamic"); the last
   step commits all, so with ``steps = 1`` one forward writes the whole block (greedy). With
   ``order = "left-to-right"`` a step commits the ``k`` leftmost masked positions instead, as an
   AR model writes (the threshold is not read);
3. generation stops for a row at the first block holding ``<eos>`` (truncated there), at a block
   that repeats the previous one (the repetition guard: the repeat is dropped), or at the cap.

The fused cache (ECHO_NOTES section 5): a forward never writes KV for its masked block. The
finished block is re-encoded as clean keys in the NEXT forward, fused with the first step of the
next masked block: ``[finished block n ; masked block n+1]``, 2B query tokens, and only block n's
KV is kept (``DynamicCache.crop`` drops the masked half). The context prefill is fused the same way
with the first masked block, so the one-step engine runs exactly one forward per block.

Both engines and the AR engine (:mod:`model.autoregressive`) call the same
``LlamaForCausalLM.forward`` with a ``DynamicCache`` under ``torch.inference_mode``, projecting
only the positions they read, so timings compare decoding strategies, not implementations.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from transformers import DynamicCache

from model.blocks import attention_bias, first_block_start
from model.generation import ActiveRows, EngineError, Generation, special_id, strip_eos
from model.report_ngrams import NgramPrior

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM

    from model.vlm import VLM


class BlockForward:
    """The KV cache of clean tokens of one batched generation, and the one forward it runs.

    In every forward the keys before the current block are clean and the keys of the current
    block are all noisy, so the block-diffusion rule of :func:`attention_bias` reduces to "a query
    sees every key of its own and earlier blocks" — the rule for all-clean tokens. The bias of the
    whole generation is therefore built once, and each forward reads a view of it (rows of its
    queries, columns of its keys); only the fused prefill, whose queries are the context, has a
    bias of its own. The key-validity row (left padding) is folded in at construction.
    """

    def __init__(
        self, lm: LlamaForCausalLM, context_mask: torch.Tensor, block_size: int, max_len: int
    ) -> None:
        self.lm, self.block_size = lm, block_size
        R, Lc = context_mask.shape
        device = context_mask.device
        self.valid = torch.ones(R, max_len, dtype=torch.bool, device=device)
        self.valid[:, :Lc] = context_mask.bool()
        self.positions = torch.arange(max_len, device=device)
        self.first_row = first_block_start(Lc, block_size)  # queries from here on use the view
        self.generation_bias = self.bias(self.positions[self.first_row :], self.positions)
        self.cache = DynamicCache()
        self.cached = 0  # clean positions held in the cache
        self.forwards = 0
        self.mask_id = special_id(lm, "mask_token_id")
        self.mask_embed = lm.get_input_embeddings()(torch.tensor(self.mask_id, device=device))

    def bias(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
        """(R, 1, Q, K) additive bias of all-clean queries ``q_pos`` over keys ``k_pos``."""
        q_clean = torch.zeros_like(q_pos, dtype=torch.bool)
        k_clean = torch.zeros_like(k_pos, dtype=torch.bool)
        valid = self.valid[:, : k_pos.shape[0]]
        return attention_bias(q_pos, q_clean, k_pos, k_clean, valid, self.block_size, self.lm.dtype)

    def mask_for(self, clean_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(bias (R,1,Q,K), positions (1,Q)) for ``clean_len`` clean then B noisy queries."""
        start, end = self.cached, self.cached + clean_len + self.block_size
        positions = self.positions[start:end]
        if start < self.first_row:  # the fused prefill: context rows, paid once
            return self.bias(positions, self.positions[:end]), positions[None]
        rows = slice(start - self.first_row, end - self.first_row)
        return self.generation_bias[:, :, rows, :end], positions[None]

    def __call__(self, clean: torch.Tensor, noisy: torch.Tensor) -> torch.Tensor:
        """Logits ``(R, B, V)`` of the noisy block; KV is kept for ``clean`` only.

        ``clean`` (R, c, D) are finished tokens right after the cache (c may be 0); ``noisy``
        (R, B, D) is the block being denoised, right after them. ``<mask>`` gets the lowest
        logit: a block is never finished with it.
        """
        bias, positions = self.mask_for(clean.shape[1])
        logits = self.lm(
            inputs_embeds=torch.cat([clean, noisy], 1),
            attention_mask=bias,
            position_ids=positions,
            cache=self.cache,
            use_cache=True,
            logits_to_keep=self.block_size,
        ).logits
        self.cache.crop(-self.block_size)
        self.cached += clean.shape[1]
        self.forwards += 1
        logits[..., self.mask_id] = torch.finfo(logits.dtype).min
        return logits

    def keep_rows(self, rows: torch.Tensor) -> None:
        """Drop every row but ``rows`` from the cache and the bias (finished reports)."""
        self.valid = self.valid[rows]
        self.generation_bias = self.generation_bias[rows]
        self.cache.batch_select_indices(rows)


@dataclass
class BlockTrace:
    """What the teacher did in one block, per generated position (DCD phase 1).

    ``probs`` (R, W, V) is the full distribution at the step the position was committed,
    ``tokens`` (R, W) the committed argmax and ``steps`` (R, W) that step, counted from 1;
    ``first`` (R, W, V) every position's distribution at step 1, from the fully masked block (the
    per-position marginals of one noisy state that the factorized baseline trains on).
    """

    probs: list[torch.Tensor] = field(default_factory=list)
    first: list[torch.Tensor] = field(default_factory=list)
    tokens: list[torch.Tensor] = field(default_factory=list)
    steps: list[torch.Tensor] = field(default_factory=list)


def choose_commits(
    confidence: torch.Tensor, masked: torch.Tensor, steps_left: int, threshold: float
) -> torch.Tensor:
    """Masked positions to commit this step: all above ``threshold`` and at least the top-k.

    ``k`` is :func:`commits_due`.
    """
    k = commits_due(masked, steps_left)
    score = confidence.masked_fill(~masked, -1.0)
    rank = score.argsort(1, descending=True).argsort(1)  # (R, W) rank of each position
    return masked & ((rank < k) | (score >= threshold))


COMMIT_ORDERS = ("confidence", "left-to-right")


def leftmost_commits(masked: torch.Tensor, steps_left: int) -> torch.Tensor:
    """Masked positions to commit this step in the left-to-right order: the k leftmost."""
    return masked & (masked.cumsum(1) <= commits_due(masked, steps_left))


def commits_due(masked: torch.Tensor, steps_left: int) -> torch.Tensor:
    """(R, 1): ``ceil(masked / steps_left)`` per row, so the block is complete after
    ``steps_left`` steps."""
    remaining = masked.sum(1, keepdim=True)
    return torch.div(remaining + steps_left - 1, steps_left, rounding_mode="floor")


def denoise_block(
    forward: BlockForward,
    clean: torch.Tensor,
    prefix: torch.Tensor,
    steps: int,
    threshold: float,
    trace: BlockTrace | None = None,
    pick: Callable[[torch.Tensor], torch.Tensor] | None = None,
    order: str = "confidence",
) -> torch.Tensor:
    """Fill one block after ``prefix`` (known embeddings, the prompt tail); ids ``(R, W)``.

    The first forward also carries ``clean`` (the previous finished block or the context).
    ``pick`` turns a one-step block's logits (R, W, V) into its ids, instead of the argmax (the
    n-gram prior, :class:`model.report_ngrams.NgramPrior`).
    """
    embed = forward.lm.get_input_embeddings()
    R, P, D = prefix.shape
    width, mask_id = forward.block_size - P, forward.mask_id
    block = torch.cat([prefix, forward.mask_embed.expand(R, width, D)], 1)  # (R, B, D)
    if steps == 1 and trace is None:  # the lean one-step path: one forward, argmax, no softmax
        logits = forward(clean, block)[:, P:]  # (R, W, V)
        return logits.argmax(-1) if pick is None else pick(logits)
    tokens = torch.full((R, width), mask_id, dtype=torch.long, device=prefix.device)
    masked = torch.ones(R, width, dtype=torch.bool, device=prefix.device)
    for step in range(steps):
        logits = forward(clean, block)[:, P:]  # (R, W, V)
        clean = clean[:, :0]
        if trace is None and step == steps - 1:  # the last step commits every masked position
            commit, pred = masked, logits.argmax(-1)
        else:
            probs = logits.float().softmax(-1)
            confidence, pred = probs.max(-1)
            commit = (
                choose_commits(confidence, masked, steps - step, threshold)
                if order == "confidence"
                else leftmost_commits(masked, steps - step)
            )
            if trace is not None:
                record_commits(trace, probs, pred, commit, step + 1, first=step == 0)
        tokens = torch.where(commit, pred, tokens)
        block[:, P:] = torch.where(commit[..., None], embed(pred), block[:, P:])
        masked &= ~commit
        if not bool(masked.any()):
            break
    return tokens


def record_commits(
    trace: BlockTrace,
    probs: torch.Tensor,
    pred: torch.Tensor,
    commit: torch.Tensor,
    step: int,
    first: bool,
) -> None:
    """Keep, for the positions committed now, their distribution, argmax and step number."""
    if first:
        trace.first.append(probs)
        trace.probs.append(torch.zeros_like(probs))
        trace.tokens.append(torch.zeros_like(pred))
        trace.steps.append(torch.zeros_like(pred))
    trace.probs[-1][commit] = probs[commit]
    trace.tokens[-1][commit] = pred[commit]
    trace.steps[-1][commit] = step


@dataclass
class BlockOutput:
    """Generated ids ``(R, T)`` (``<eos>``-filled after a row stops) and forwards run."""

    tokens: torch.Tensor
    forwards: int


def decode_blocks(
    lm: LlamaForCausalLM,
    context_embeds: torch.Tensor,
    context_mask: torch.Tensor,
    *,
    block_size: int,
    steps: int,
    threshold: float,
    max_new_tokens: int,
    repetition_guard: bool = True,
    trace: BlockTrace | None = None,
    forced: torch.Tensor | None = None,
    ngram_prior: NgramPrior | None = None,
    drop_finished_rows: bool = True,
    order: str = "confidence",
) -> BlockOutput:
    """Write up to ``max_new_tokens`` after the context, block by block (module docstring).

    ``forced`` (R, T) replaces each finished block by the same positions of another writer's
    output before the next block conditions on it: the model still denoises (and ``trace``
    records) every block, but given that writer's previous blocks, not its own. Positions past
    ``T`` count as ``<eos>``. DCD's student-prefix round uses it to ask the teacher what it would
    write after the student's blocks. ``ngram_prior`` (one step only) writes each block under the
    training reports' n-grams, across block boundaries too (:mod:`model.report_ngrams`).
    ``drop_finished_rows`` drops ended rows from the batch (:class:`model.generation.ActiveRows`);
    with a ``trace``, which holds every row of every block, no row is dropped. ``order`` is one of
    :data:`COMMIT_ORDERS` (module docstring).
    """
    if ngram_prior is not None and (steps != 1 or trace is not None):
        raise EngineError("the report n-gram prior applies to one-step decoding only")
    eos_id = special_id(lm, "eos_token_id")
    R, Lc, _ = context_embeds.shape
    s0 = first_block_start(Lc, block_size)
    max_len = s0 + math.ceil((Lc - s0 + max_new_tokens) / block_size) * block_size
    forward = BlockForward(lm, context_mask, block_size, max_len)
    embed = lm.get_input_embeddings()
    clean, prefix = context_embeds[:, :s0], context_embeds[:, s0:]
    done = torch.zeros(R, dtype=torch.bool, device=context_embeds.device)
    rows = ActiveRows(R, max_len - s0, eos_id, context_embeds.device)
    drop_finished_rows = drop_finished_rows and trace is None
    blocks: list[torch.Tensor] = []  # (rows still decoding, width) each
    # reads the blocks written so far: the list grows (and loses rows) in place
    pick = None if ngram_prior is None else partial(ngram_prior, written=blocks)
    written = 0
    while written < max_new_tokens and not bool(done.all()):
        tokens = denoise_block(
            forward, clean, prefix, steps, threshold, trace, pick, order
        ).masked_fill(done[:, None], eos_id)
        if repetition_guard and blocks and blocks[-1].shape == tokens.shape:
            repeated = (tokens == blocks[-1]).all(1) & ~done
            tokens = tokens.masked_fill(repeated[:, None], eos_id)
        if forced is not None:
            tokens = forced_block(forced, written, tokens.shape[1], eos_id)
        done |= (tokens == eos_id).any(1)
        blocks.append(tokens)
        written += tokens.shape[1]
        clean = torch.cat([prefix, embed(tokens)], 1)
        prefix = prefix[:, :0]
        if drop_finished_rows and rows.worth_dropping(done):
            keep = rows.drop(done, torch.cat(blocks, 1))
            blocks[:] = [block[keep] for block in blocks]
            done, clean, prefix = done[keep], clean[keep], prefix[keep]
            forced = None if forced is None else forced[keep]
            forward.keep_rows(keep)
    tokens = rows.finish(torch.cat(blocks, 1))[:, :max_new_tokens]
    return BlockOutput(tokens, forward.forwards)


def forced_block(forced: torch.Tensor, start: int, width: int, eos_id: int) -> torch.Tensor:
    """Columns ``start : start + width`` of ``forced`` (R, T), ``<eos>``-padded past ``T``."""
    block = forced[:, start : start + width]
    pad = block.new_full((block.shape[0], width - block.shape[1]), eos_id)
    return torch.cat([block, pad], 1)


class MultiStepEngine:
    """The stage-2 sampler: S steps per block with confidence-threshold commits (the teacher).

    Parameters
    ----------
    block_size : int or None
        B; None reads it from the checkpoint (``VLMConfig.block_size``).
    steps : int or None
        S forwards at most per block; None means S = B (one token per step at worst).
    threshold : float
        Confidence above which a masked position is committed early (0.85 as ECHO's code).
    order : {"confidence", "left-to-right"}
        Which masked positions a step commits: the most confident (ECHO), or the leftmost, the
        order an AR model writes in, which misses fewer findings
        (``docs/decisions/007-teacher-order.md``). Left to right, a block always takes S
        forwards; ``threshold`` is not read.
    repetition_guard : bool
        End a row at a block identical to the previous one.
    """

    name = "diffusion-multistep"
    options: dict[str, Any]  # set by get_engine
    drop_finished_rows = True  # as the AR engine's: not an option, benchmarks turn it off

    def __init__(
        self,
        block_size: int | None = None,
        steps: int | None = None,
        threshold: float = 0.85,
        repetition_guard: bool = True,
        order: str = "confidence",
    ) -> None:
        if (block_size is not None and block_size < 1) or (steps is not None and steps < 1):
            raise EngineError(f"block_size and steps must be >= 1, got {block_size}, {steps}")
        if not 0.0 < threshold <= 1.0:
            raise EngineError(f"threshold must be in (0, 1], got {threshold}")
        if order not in COMMIT_ORDERS:
            raise EngineError(f"order must be one of {COMMIT_ORDERS}, got {order!r}")
        self.block_size, self.steps, self.threshold = block_size, steps, threshold
        self.order = order
        self.repetition_guard = repetition_guard

    def resolve(self, vlm: VLM) -> tuple[int, int]:
        """(B, S) from the options, else from the checkpoint; AR checkpoints have no B."""
        block_size = self.block_size or vlm.config.block_size
        if block_size is None:
            raise EngineError(
                f"engine {self.name!r} needs a block-diffusion checkpoint (stage rad/dcd) "
                "or a block_size option"
            )
        return block_size, self.steps or block_size

    def ngram_prior(self, vlm: VLM) -> NgramPrior | None:
        """The prior a one-step block is written under; the multi-step sampler has none."""
        return None

    @torch.inference_mode()
    def generate(
        self,
        vlm: VLM,
        context_embeds: torch.Tensor,
        context_mask: torch.Tensor,
        *,
        max_new_tokens: int,
    ) -> Generation:
        start = time.perf_counter()
        block_size, steps = self.resolve(vlm)
        out = decode_blocks(
            vlm.lm,
            context_embeds,
            context_mask,
            block_size=block_size,
            steps=steps,
            threshold=self.threshold,
            max_new_tokens=max_new_tokens,
            repetition_guard=self.repetition_guard,
            ngram_prior=self.ngram_prior(vlm),
            drop_finished_rows=self.drop_finished_rows,
            order=self.order,
        )
        eos_id = special_id(vlm.lm, "eos_token_id")
        ids = [strip_eos(row, eos_id) for row in out.tokens.tolist()]
        return Generation(token_ids=ids, forwards=out.forwards, seconds=time.perf_counter() - start)


class OneStepEngine(MultiStepEngine):
    """The DCD engine: one forward per block writes all B tokens (fused cache).

    Parameters
    ----------
    block_size, repetition_guard : as :class:`MultiStepEngine`.
    report_ngrams : bool
        Write each block under the checkpoint's report n-grams (:mod:`model.report_ngrams`)
        instead of taking every position's argmax; a checkpoint without them is refused.
    ngram_candidates : int
        Tokens per position the block is chosen from (K).
    ngram_penalty : float
        Log-probability an n-gram that no training report holds costs.
    """

    name = "diffusion-onestep"

    def __init__(
        self,
        block_size: int | None = None,
        repetition_guard: bool = True,
        report_ngrams: bool = True,
        ngram_candidates: int = 4,
        ngram_penalty: float = 10.0,
    ) -> None:
        super().__init__(block_size=block_size, steps=1, repetition_guard=repetition_guard)
        if ngram_candidates < 1 or ngram_penalty < 0:
            raise EngineError(
                "need ngram_candidates >= 1 and ngram_penalty >= 0, "
                f"got {ngram_candidates}, {ngram_penalty}"
            )
        self.report_ngrams = report_ngrams
        self.ngram_candidates, self.ngram_penalty = ngram_candidates, ngram_penalty

    def ngram_prior(self, vlm: VLM) -> NgramPrior | None:
        if not self.report_ngrams:
            return None
        if vlm.report_ngrams is None:
            raise EngineError(
                "this checkpoint has no report n-grams (report_ngrams.safetensors); add them "
                "with `echocxr report-ngrams CHECKPOINT`, or decode without: report_ngrams=false"
            )
        eos_id = special_id(vlm.lm, "eos_token_id")
        ngrams = vlm.report_ngrams.to(vlm.device)
        return NgramPrior(ngrams, eos_id, self.ngram_candidates, self.ngram_penalty)
