"""RAD layout, mask, noise and loss, checked against an independent block-by-block reference.

The reference builds each block's conditional the slow way, one forward per block on the sequence
``[context | clean blocks < n | noisy block n]`` with a mask written out with loops here, and the
RAD forward must give the same logits for every noisy block at once.
"""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from model.blocks import (
    DiffusionError,
    attention_bias,
    first_block_start,
    make_canvas,
    rad_sequence,
    response_logits,
)
from model.diffusion import rad_loss, sample_noise

pytestmark = pytest.mark.unit

VOCAB, MASK_ID, EOS_ID = 40, 3, 2


def tiny_lm(attn: str = "sdpa", seed: int = 0) -> LlamaForCausalLM:
    """A real, randomly initialised 2-layer Llama with the special ids the engines read."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        attn_implementation=attn,
        eos_token_id=EOS_ID,
        tie_word_embeddings=False,
    )
    lm = LlamaForCausalLM(config).eval()
    lm.config.mask_token_id = MASK_ID
    return lm


def context_of(
    lm: LlamaForCausalLM, rows: int, length: int, pads: tuple[int, ...] = ()
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random context embeddings with ``pads[i]`` left-padding positions in row i."""
    embeds = torch.randn(rows, length, lm.config.hidden_size)
    mask = torch.ones(rows, length, dtype=torch.long)
    for row, count in enumerate(pads):
        mask[row, :count] = 0
    return embeds, mask


def reference_mask(n_clean: int, block_size: int, valid: torch.Tensor) -> torch.Tensor:
    """Loops: clean tokens see clean blocks <= their own; the last (noisy) block all but pads."""
    length = n_clean + block_size
    allowed = torch.zeros(length, length, dtype=torch.bool)
    for q in range(length):
        for k in range(length):
            q_noisy = q >= n_clean
            allowed[q, k] = bool(valid[k]) and (q_noisy or k // block_size <= q // block_size)
    bias = torch.zeros(length, length).masked_fill(~allowed, torch.finfo(torch.float32).min)
    return bias[None, None]


def reference_block_logits(
    lm: LlamaForCausalLM,
    context: torch.Tensor,
    mask: torch.Tensor,
    clean_tokens: list[int],
    noisy_tokens: list[int],
    block_size: int,
    n: int,
) -> torch.Tensor:
    """Logits of noisy block ``n`` (one row) from its own forward, no RAD layout involved."""
    Lc = context.shape[1]
    s0 = first_block_start(Lc, block_size)
    tail = Lc - s0
    embed = lm.get_input_embeddings()
    start, end = n * block_size - tail, (n + 1) * block_size - tail  # canvas indices of block n
    clean = torch.cat(
        [context[0], embed(torch.tensor(clean_tokens[: max(start, 0)], dtype=torch.long))]
    )  # (s0+tail+.., D)
    if n == 0:
        noisy = torch.cat([context[0, s0:], embed(torch.tensor(noisy_tokens[:end]))])
        clean = context[0, :s0]
    else:
        noisy = embed(torch.tensor(noisy_tokens[start:end]))
    inputs = torch.cat([clean, noisy])[None]
    valid = torch.cat([mask[0].bool(), torch.ones(inputs.shape[1] - Lc, dtype=torch.bool)])
    bias = reference_mask(clean.shape[0], block_size, valid)
    logits = lm(
        inputs_embeds=inputs, attention_mask=bias, position_ids=torch.arange(inputs.shape[1])[None]
    ).logits
    return logits[0, -block_size:][tail if n == 0 else 0 :]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize(("block_size", "context_len"), [(4, 9), (8, 12), (8, 16), (16, 21)])
def test_rad_noisy_logits_equal_blockwise_reference(
    attn: str, block_size: int, context_len: int
) -> None:
    lm = tiny_lm(attn)
    context, mask = context_of(lm, 2, context_len, pads=(0, 3))
    lengths = [2 * block_size + 3, block_size - 1]
    response = torch.zeros(2, max(lengths), dtype=torch.long)
    response_mask = torch.zeros_like(response)
    for row, length in enumerate(lengths):
        response[row, :length] = torch.randint(5, VOCAB, (length,))
        response[row, length - 1] = EOS_ID
        response_mask[row, :length] = 1
    tail = context_len - first_block_start(context_len, block_size)
    canvas = make_canvas(response, response_mask, tail, block_size, EOS_ID)
    masked, _ = sample_noise(canvas, 0.3, torch.Generator().manual_seed(1))
    noisy = canvas.tokens.masked_fill(masked, MASK_ID)
    with torch.no_grad():
        logits = response_logits(lm, rad_sequence(lm, context, mask, canvas, noisy))
        for row in range(2):
            n_blocks = (tail + int(canvas.valid[row].sum())) // block_size
            for n in range(n_blocks):
                expected = reference_block_logits(
                    lm,
                    context[row : row + 1],
                    mask[row : row + 1],
                    canvas.tokens[row].tolist(),
                    noisy[row].tolist(),
                    block_size,
                    n,
                )
                start = max(n * block_size - tail, 0)
                got = logits[row, start : (n + 1) * block_size - tail]
                torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-4)


def test_attention_bias_rule_on_small_layout() -> None:
    # positions 0..3 context (B=2), then noisy block 2 (pos 4,5), clean block 2 (pos 4,5)
    positions = torch.tensor([0, 1, 2, 3, 4, 5, 4, 5])
    noisy = torch.tensor([False] * 4 + [True, True] + [False, False])
    valid = torch.ones(1, 8, dtype=torch.bool)
    valid[0, 0] = False
    allowed = attention_bias(positions, noisy, positions, noisy, valid, 2)[0, 0] == 0
    expected = torch.tensor(
        [
            [0, 1, 0, 0, 0, 0, 0, 0],
            [0, 1, 0, 0, 0, 0, 0, 0],
            [0, 1, 1, 1, 0, 0, 0, 0],
            [0, 1, 1, 1, 0, 0, 0, 0],
            [0, 1, 1, 1, 1, 1, 0, 0],  # noisy: clean earlier blocks + own noisy block
            [0, 1, 1, 1, 1, 1, 0, 0],
            [0, 1, 1, 1, 0, 0, 1, 1],  # clean: clean blocks <= own, never noisy
            [0, 1, 1, 1, 0, 0, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(allowed, expected)


def test_canvas_fills_eos_block_and_marks_padding_blocks() -> None:
    response = torch.tensor(
        [[10, 11, 12, EOS_ID, 0, 0, 0, 0, 0], [10, 11, 12, 13, 14, 15, 16, 17, EOS_ID]]
    )
    mask = (torch.arange(9)[None] < torch.tensor([[4], [9]])).long()
    canvas = make_canvas(response, mask, tail=1, block_size=4, eos_id=EOS_ID)
    # tail 1: blocks hold canvas 0-2, 3-6, 7-10 -> width 11
    assert canvas.width == 11
    assert canvas.tokens[0, :7].tolist() == [10, 11, 12, EOS_ID, EOS_ID, EOS_ID, EOS_ID]
    assert canvas.valid[0].tolist() == [True] * 7 + [False] * 4
    assert canvas.valid[1].all()
    assert torch.equal(canvas.supervised, canvas.valid)


def test_truncated_row_is_not_supervised_past_its_end() -> None:
    response = torch.tensor([[10, 11, 12, 13, 14]])  # cut at max length, no eos
    canvas = make_canvas(response, torch.ones_like(response), tail=0, block_size=4, eos_id=EOS_ID)
    assert canvas.supervised[0].tolist() == [True] * 5 + [False] * 3


def test_noise_rate_is_constant_per_block_and_clipped() -> None:
    response = torch.randint(5, VOCAB, (64, 24))
    canvas = make_canvas(response, torch.ones_like(response), tail=0, block_size=8, eos_id=EOS_ID)
    masked, t = sample_noise(canvas, 0.25, torch.Generator().manual_seed(0))
    assert bool((t > 0.25).all()) and bool((t <= 1).all())
    assert torch.equal(t.view(64, 3, 8), t.view(64, 3, 8)[..., :1].expand(64, 3, 8))
    rate = masked.float().mean().item()
    assert abs(rate - 0.625) < 0.05  # E[t] for U(0.25, 1]


def test_empty_response_is_rejected() -> None:
    with pytest.raises(DiffusionError, match="at least one response token"):
        make_canvas(
            torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long), 0, 4, EOS_ID
        )


def test_rad_loss_trains_the_denoiser() -> None:
    """AdamW steps on fixed responses must cut the loss at a fixed noise draw (it learns)."""
    lm = tiny_lm().train()
    context, mask = context_of(lm, 4, 10)
    response = torch.randint(5, VOCAB, (4, 12))
    response[:, -1] = EOS_ID

    def loss_at(seed: int) -> torch.Tensor:
        return rad_loss(
            lm,
            context,
            mask,
            response,
            torch.ones_like(response),
            block_size=4,
            mask_id=MASK_ID,
            eos_id=EOS_ID,
            generator=torch.Generator().manual_seed(seed),
        )

    before = loss_at(999).item()
    optimizer = torch.optim.AdamW(lm.parameters(), lr=1e-2)
    for step in range(80):
        optimizer.zero_grad()
        loss_at(step).backward()
        optimizer.step()
    after = loss_at(999).item()
    assert after < 0.25 * before, (before, after)


def test_a_rows_loss_does_not_depend_on_the_lengths_beside_it() -> None:
    """With ``tokens_per_row`` every token weighs the same in every batch, as a batch of similar
    lengths needs; with the batch's own count, a row weighs more beside shorter rows."""
    lm = tiny_lm()
    context, mask = context_of(lm, 2, 10)
    response = torch.randint(5, VOCAB, (2, 14))
    response_mask = torch.ones_like(response)
    response_mask[0, 5:] = 0  # row 0: 5 tokens, row 1: 14
    response[0, 4] = response[1, 13] = EOS_ID

    def loss(rows: list[int], tokens_per_row: float | None) -> float:
        return rad_loss(
            lm,
            context[rows],
            mask[rows],
            response[rows][:, : int(response_mask[rows].sum(1).max())],
            response_mask[rows][:, : int(response_mask[rows].sum(1).max())],
            block_size=4,
            mask_id=MASK_ID,
            eos_id=EOS_ID,
            t_min=1.0,  # every response token masked: no random draw decides the loss
            tokens_per_row=tokens_per_row,
        ).item()

    alone = [loss([0], 9.0), loss([1], 9.0)]
    assert loss([0, 1], 9.0) == pytest.approx(sum(alone) / 2, rel=1e-5)
    counted_alone = [loss([0], None), loss([1], None)]
    assert loss([0, 1], None) != pytest.approx(sum(counted_alone) / 2, rel=1e-3)
