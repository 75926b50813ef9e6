"""The block-diffusion layout shared by RAD training, DCD and the block-decoding engines.

References: ECHO (``../shared/ECHO_NOTES.md`` sections 2 and 4) for the asymmetric layout, BD3-LM
(``block_diff_mask`` in kuleshov-group/bd3lms) for the vectorised noisy/clean training sequence.

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

After ``<eos>`` the rest of its block is filled with ``<eos>`` (:func:`make_canvas`), since
decoding commits a whole block and stops at the first ``<eos>`` in it; blocks after it are padding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM


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
    return lm.lm_head(hidden[:, sequence.noisy_slice])


def token_count(counted: torch.Tensor, tokens_per_row: float | None) -> torch.Tensor | float:
    """The divisor of a per-token loss over ``counted`` (R, W): its count, or R x a constant."""
    if tokens_per_row is None:
        return counted.sum().clamp(min=1)
    return counted.shape[0] * tokens_per_row
