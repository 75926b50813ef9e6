"""The block samplers against a naive reference that recomputes everything with no KV cache."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from transformers import LlamaForCausalLM

from model.config import VLMConfig
from model.decoding import EngineError, get_engine
from model.diffusion import first_block_start
from model.report_ngrams import NgramPrior, ReportNgrams
from model.sampling import BlockOutput, BlockTrace, decode_blocks
from model.tokenizer import Tokenizer
from model.vlm import VLM
from tests.model.conftest import tiny_model_config
from tests.model.test_diffusion import (
    EOS_ID,
    MASK_ID,
    VOCAB,
    context_of,
    reference_block_logits,
    tiny_lm,
)

pytestmark = pytest.mark.unit


def naive_block(
    lm: LlamaForCausalLM,
    context: torch.Tensor,
    mask: torch.Tensor,
    written: list[int],
    block_size: int,
    steps: int,
    threshold: float,
    order: str = "confidence",
) -> list[int]:
    """One row's next block after ``written``: one full forward per step, commits spelled out."""
    tail = context.shape[1] - first_block_start(context.shape[1], block_size)
    width = block_size - tail if not written else block_size
    block = [MASK_ID] * width
    for step in range(steps):
        logits = reference_block_logits(
            lm,
            context,
            mask,
            written,
            written + block,
            block_size,
            (len(written) + tail) // block_size,
        )
        probs = logits.index_fill(-1, torch.tensor([MASK_ID]), float("-inf")).softmax(-1)
        masked = [i for i in range(width) if block[i] == MASK_ID]
        k = math.ceil(len(masked) / (steps - step))
        if order == "left-to-right":
            commit = set(masked[:k])
        else:
            by_confidence = sorted(masked, key=lambda i: -probs[i].max().item())
            sure = {i for i in masked if probs[i].max().item() >= threshold}
            commit = set(by_confidence[:k]) | sure
        for i in commit:
            block[i] = int(probs[i].argmax())
        if MASK_ID not in block:
            break
    return block


def naive_decode(
    lm: LlamaForCausalLM,
    context: torch.Tensor,
    mask: torch.Tensor,
    block_size: int,
    steps: int,
    threshold: float,
    max_new: int,
    order: str = "confidence",
) -> list[int]:
    """One row, block by block with :func:`naive_block`, stop rules spelled out."""
    written: list[int] = []
    previous: list[int] | None = None
    while len(written) < max_new:
        block = naive_block(lm, context, mask, written, block_size, steps, threshold, order)
        if block == previous:
            break
        written += block
        previous = block
        if EOS_ID in block:
            break
    written = written[:max_new]
    return written[: written.index(EOS_ID)] if EOS_ID in written else written


def strip(row: list[int]) -> list[int]:
    return row[: row.index(EOS_ID)] if EOS_ID in row else row


@pytest.mark.parametrize(
    ("block_size", "steps", "threshold", "order"),
    [
        (4, 4, 0.85, "confidence"),
        (4, 2, 0.05, "confidence"),
        (8, 1, 0.85, "confidence"),
        (8, 3, 0.2, "confidence"),
        (4, 4, 0.85, "left-to-right"),
        (8, 3, 0.2, "left-to-right"),
    ],
)
def test_sampler_equals_naive_reference(
    block_size: int, steps: int, threshold: float, order: str
) -> None:
    lm = tiny_lm(seed=block_size + steps)
    context, mask = context_of(lm, 2, 11, pads=(0, 2))
    with torch.inference_mode():
        out = decode_blocks(
            lm,
            context,
            mask,
            block_size=block_size,
            steps=steps,
            threshold=threshold,
            max_new_tokens=21,
            order=order,
        )
        for row in range(2):
            one = (context[row : row + 1], mask[row : row + 1])
            expected = naive_decode(lm, *one, block_size, steps, threshold, 21, order)
            assert strip(out.tokens[row].tolist()) == expected


def forward_shapes(lm: LlamaForCausalLM) -> list[tuple[int, int]]:
    """(rows, query tokens) of every real LM call (a hook, not the engine's bookkeeping)."""
    calls: list[tuple[int, int]] = []
    lm.model.register_forward_hook(
        lambda _m, _a, kwargs, _o: calls.append(tuple(kwargs["inputs_embeds"].shape[:2])),
        with_kwargs=True,
    )
    return calls


def ragged_batch() -> tuple[LlamaForCausalLM, torch.Tensor, torch.Tensor]:
    """A random model and eight left-padded rows whose reports end after 2 to 10 blocks."""
    lm = tiny_lm(seed=2)
    torch.manual_seed(2)
    return lm, *context_of(lm, 8, 11, pads=(0, 2, 1, 3, 0, 0, 4, 1))


@pytest.mark.parametrize(("steps", "threshold"), [(1, 0.85), (2, 0.3)])
def test_finished_rows_leave_the_batch_and_each_row_still_decodes_as_alone(
    steps: int, threshold: float
) -> None:
    """Rows that have ended stop riding along, and every row still equals the no-cache
    reference and the batch that keeps them."""
    lm, context, mask = ragged_batch()
    calls = forward_shapes(lm)
    kwargs: dict[str, Any] = {"steps": steps, "threshold": threshold, "max_new_tokens": 40}
    with torch.inference_mode():
        dropping = decode_blocks(lm, context, mask, block_size=4, **kwargs)
        dropped_rows = [rows for rows, _ in calls]
        keeping = decode_blocks(lm, context, mask, block_size=4, drop_finished_rows=False, **kwargs)
    assert dropped_rows[0] == 8 and dropped_rows[-1] < 8
    assert dropped_rows == sorted(dropped_rows, reverse=True)
    assert {rows for rows, _ in calls[len(dropped_rows) :]} == {8}
    assert torch.equal(dropping.tokens, keeping.tokens)
    assert dropping.forwards == keeping.forwards
    for row in range(8):
        alone = naive_decode(
            lm, context[row : row + 1], mask[row : row + 1], 4, steps, threshold, 40
        )
        assert strip(dropping.tokens[row].tolist()) == alone


def test_dropping_rows_keeps_each_rows_history_under_report_ngrams() -> None:
    """The n-gram prior reads each row's last blocks; after rows leave, it must still read the
    right row's. The table here holds other rows' reports, so it rewrites most blocks."""
    lm, context, mask = ragged_batch()
    kwargs: dict[str, Any] = {"block_size": 4, "steps": 1, "threshold": 0.85, "max_new_tokens": 40}
    with torch.inference_mode():
        plain = decode_blocks(lm, context, mask, **kwargs).tokens.tolist()
        reports = [[*strip(row), EOS_ID] for row in plain[4:]]
        ngrams = ReportNgrams.from_reports(reports, order=3, vocab_size=VOCAB, start_id=1)
        prior = NgramPrior(ngrams, EOS_ID, candidates=8, penalty=100.0)
        calls = forward_shapes(lm)
        dropping = decode_blocks(lm, context, mask, ngram_prior=prior, **kwargs)
        dropped_rows = [rows for rows, _ in calls]
        keeping = decode_blocks(
            lm, context, mask, ngram_prior=prior, drop_finished_rows=False, **kwargs
        )
    assert min(dropped_rows) < 8
    assert torch.equal(dropping.tokens, keeping.tokens)
    assert dropping.tokens[:4].tolist() != plain[:4]


@pytest.mark.parametrize("block_size", [4, 8, 16])
def test_one_step_runs_one_forward_per_block_with_fused_cache(block_size: int) -> None:
    lm = tiny_lm()
    calls = forward_shapes(lm)
    context, mask = context_of(lm, 1, 13)
    with torch.inference_mode():
        out = decode_blocks(
            lm,
            context,
            mask,
            block_size=block_size,
            steps=1,
            threshold=0.85,
            max_new_tokens=40,
            repetition_guard=False,
        )
    s0 = first_block_start(13, block_size)
    n_blocks = math.ceil((13 - s0 + out.tokens.shape[1]) / block_size)
    queries = [tokens for _, tokens in calls]
    assert out.forwards == len(queries) == n_blocks
    assert queries[0] == s0 + block_size  # context prefill fused with the first masked block
    assert set(queries[1:]) <= {2 * block_size}  # [finished block ; masked block]


def constant_lm(eos_id: int) -> LlamaForCausalLM:
    """A model whose logits are all zero, so every position predicts token 0."""
    lm = tiny_lm()
    lm.model.norm.weight.data.zero_()
    lm.config.eos_token_id = eos_id
    return lm


def test_repeated_block_ends_generation() -> None:
    lm = constant_lm(eos_id=EOS_ID)
    context, mask = context_of(lm, 1, 6)
    with torch.inference_mode():
        out = decode_blocks(
            lm, context, mask, block_size=4, steps=1, threshold=0.85, max_new_tokens=40
        )
    # block 0 holds 2 new tokens after the 2-token tail, block 1 four, block 2 repeats block 1
    assert strip(out.tokens[0].tolist()) == [0] * 6
    assert out.forwards == 3


def unseen_trigrams(row: list[int], ngrams: ReportNgrams) -> int:
    return sum(tuple(row[i : i + 3]) not in ngrams for i in range(len(row) - 2))


def test_one_step_decoding_under_report_ngrams_writes_only_their_trigrams() -> None:
    """Near-flat logits put one first choice at every position ("0 0 0 0"); the training
    reports here count up, so under their trigrams each position must move on, across block
    boundaries too."""
    lm = constant_lm(eos_id=EOS_ID)
    lm.model.norm.weight.data.fill_(1e-3)
    reports = [[*range(start, start + 10), EOS_ID] for start in (4, 16, 28)]
    ngrams = ReportNgrams.from_reports(reports, order=3, vocab_size=VOCAB, start_id=1)
    prior = NgramPrior(ngrams, EOS_ID, candidates=VOCAB, penalty=100.0)
    context, mask = context_of(lm, 2, 6)
    kwargs: dict[str, Any] = {"block_size": 4, "steps": 1, "threshold": 0.85, "max_new_tokens": 24}
    with torch.inference_mode():
        plain = decode_blocks(lm, context, mask, repetition_guard=False, **kwargs)
        guided = decode_blocks(
            lm, context, mask, repetition_guard=False, ngram_prior=prior, **kwargs
        )
    for before, after in zip(plain.tokens.tolist(), guided.tokens.tolist(), strict=True):
        assert unseen_trigrams(strip(before), ngrams) > 0
        assert len(strip(after)) > 6 and unseen_trigrams(strip(after), ngrams) == 0, after
    # one forward per block: 10 tokens and <eos> take the 2-token first block and three of 4
    assert guided.forwards == 4
    with pytest.raises(EngineError, match="one-step"):
        decode_blocks(lm, context, mask, ngram_prior=prior, **(kwargs | {"steps": 2}))


def test_eos_in_first_block_stops_after_one_forward() -> None:
    lm = constant_lm(eos_id=0)
    context, mask = context_of(lm, 1, 6)
    with torch.inference_mode():
        out = decode_blocks(
            lm, context, mask, block_size=4, steps=2, threshold=0.01, max_new_tokens=40
        )
    assert (
        out.forwards == 1
    )  # uniform 1/40 > threshold everywhere: one step commits the whole block
    assert out.tokens[0, 0].item() == 0


def traced_decode(
    lm: LlamaForCausalLM, context: torch.Tensor, mask: torch.Tensor, **options: Any
) -> tuple[BlockOutput, BlockTrace]:
    """A B = 4 teacher run without the repetition guard, as DCD's phase 1 runs it."""
    trace = BlockTrace()
    with torch.inference_mode():
        out = decode_blocks(
            lm, context, mask, block_size=4, repetition_guard=False, trace=trace, **options
        )
    return out, trace


def test_trace_records_commit_distribution_argmax_and_step() -> None:
    lm = tiny_lm()
    context, mask = context_of(lm, 1, 8)
    out, trace = traced_decode(lm, context, mask, steps=4, threshold=1.0, max_new_tokens=8)
    tokens = torch.cat(trace.tokens, 1)
    steps = torch.cat(trace.steps, 1)
    probs = torch.cat(trace.probs, 1)
    assert torch.equal(tokens, out.tokens)
    assert torch.equal(probs.argmax(-1), tokens)
    torch.testing.assert_close(probs.sum(-1), torch.ones_like(steps, dtype=torch.float32))
    # threshold 1.0 commits exactly one position per step: steps 1..4 in each block
    for block in steps.view(1, 2, 4)[0]:
        assert sorted(block.tolist()) == [1, 2, 3, 4]


def test_forced_blocks_condition_the_next_block_and_the_trace_keeps_the_models_own() -> None:
    """DCD's student-prefix round: the teacher writes each block after another writer's blocks."""
    lm = tiny_lm(seed=7)
    context, mask = context_of(lm, 2, 9, pads=(0, 1))
    other = torch.randint(3, 40, (2, 11))  # another writer's report, shorter than the run
    other[1, 6] = EOS_ID  # row 1 ends in its second block
    out, trace = traced_decode(
        lm, context, mask, steps=3, threshold=0.6, max_new_tokens=14, forced=other
    )
    assert torch.equal(out.tokens[:, :11], other)
    assert (out.tokens[0, 11:] == EOS_ID).all()  # past the forced report: <eos>
    assert [t.shape[1] for t in trace.tokens] == [3, 4, 4, 4]  # the prompt tail fills one slot
    for row in range(2):
        start = 0
        for block in trace.tokens:
            own = naive_block(
                lm,
                context[row : row + 1],
                mask[row : row + 1],
                other[row, :start].tolist(),
                4,
                3,
                0.6,
            )
            assert block[row].tolist() == own
            start += block.shape[1]


def tiny_diffusion_vlm(block_size: int) -> tuple[VLM, Tokenizer]:
    tokenizer = Tokenizer.train(
        ["FINDINGS: the lungs are clear. IMPRESSION: normal."] * 4, vocab_size=300
    )
    config = VLMConfig.from_dict(
        {**tiny_model_config().to_dict(), "stage": "rad", "block_size": block_size}
    )
    torch.manual_seed(0)
    return VLM(config, tokenizer).eval(), tokenizer


def test_engines_are_registered_and_read_block_size_from_checkpoint() -> None:
    vlm, tokenizer = tiny_diffusion_vlm(block_size=4)
    prompt = torch.tensor([tokenizer.chat_prompt("Write the report.")])
    context, mask = vlm.build_context(torch.rand(1, 1, 32, 32), prompt, torch.ones_like(prompt))
    one = get_engine("diffusion-onestep", report_ngrams=False).generate(
        vlm, context, mask, max_new_tokens=12
    )
    multi = get_engine("diffusion-multistep", steps=2).generate(
        vlm, context, mask, max_new_tokens=12
    )
    assert one.forwards <= math.ceil((context.shape[1] % 4 + 12) / 4)
    assert len(one.token_ids[0]) <= 12 and len(multi.token_ids[0]) <= 12
    assert multi.forwards >= one.forwards


def test_one_step_engine_needs_the_checkpoints_report_ngrams_unless_told_otherwise() -> None:
    vlm, tokenizer = tiny_diffusion_vlm(block_size=4)
    prompt = torch.tensor([tokenizer.chat_prompt("Write the report.")])
    context, mask = vlm.build_context(torch.rand(1, 1, 32, 32), prompt, torch.ones_like(prompt))
    engine = get_engine("diffusion-onestep", ngram_candidates=6, ngram_penalty=50.0)
    with pytest.raises(EngineError, match=r"report-ngrams CHECKPOINT.*report_ngrams=false"):
        engine.generate(vlm, context, mask, max_new_tokens=12)
    reports = ["FINDINGS: The lungs are clear.\nIMPRESSION: No acute disease."]
    vlm.report_ngrams = ReportNgrams.of_texts(reports, tokenizer)
    prior = engine.ngram_prior(vlm)  # type: ignore[attr-defined]
    assert prior is not None and prior.ngrams is vlm.report_ngrams
    assert (prior.eos_id, prior.candidates, prior.penalty) == (tokenizer.eos_id, 6, 50.0)
    guided = engine.generate(vlm, context, mask, max_new_tokens=16)
    assert guided.forwards <= math.ceil((context.shape[1] % 4 + 16) / 4)  # one per block


def test_ar_checkpoint_is_refused_by_diffusion_engine() -> None:
    vlm, _ = tiny_diffusion_vlm(block_size=4)
    vlm.config = tiny_model_config()  # an AR config: no block size
    context, mask = torch.zeros(1, 3, 64), torch.ones(1, 3, dtype=torch.long)
    with pytest.raises(EngineError, match="block-diffusion checkpoint"):
        get_engine("diffusion-onestep").generate(vlm, context, mask, max_new_tokens=4)
