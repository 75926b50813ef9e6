from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.autoregressive import AREngine, LoopGuard
from model.checkpoint import load_checkpoint
from model.data.qa import REPORT_PROMPT
from model.decoding import ENGINES, EngineError, get_engine
from model.sampling import MultiStepEngine, OneStepEngine
from model.tokenizer import Tokenizer, pad_rows
from model.vlm import VLM
from tests.model.conftest import synthetic_study, tiny_model_config

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def random_vlm() -> tuple[VLM, Tokenizer]:
    tokenizer = Tokenizer.train(["a quick brown fox jumps over the lazy dog"] * 4, vocab_size=300)
    torch.manual_seed(1)
    return VLM(tiny_model_config(), tokenizer).eval(), tokenizer


def context(
    vlm: VLM, prompts: list[list[int]], pad_id: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    ids, mask = pad_rows(prompts, pad_id, left=True)
    return vlm.build_context(torch.rand(len(prompts), 1, 32, 32), ids, mask)


def greedy_without_cache(
    vlm: VLM, embeds: torch.Tensor, mask: torch.Tensor, steps: int
) -> list[int]:
    """Reference decoder: re-run the whole sequence every step."""
    tokens: list[int] = []
    for _ in range(steps):
        extra = vlm.embed_tokens(torch.tensor([tokens], dtype=torch.long))
        inputs = torch.cat([embeds, extra], 1)
        full_mask = torch.cat([mask, torch.ones(1, len(tokens), dtype=mask.dtype)], 1)
        tokens.append(
            int(vlm.lm(inputs_embeds=inputs, attention_mask=full_mask).logits[0, -1].argmax())
        )
    return tokens


@torch.no_grad()
def test_kv_cache_decoding_matches_full_recomputation(random_vlm: tuple[VLM, Tokenizer]) -> None:
    vlm, tokenizer = random_vlm
    embeds, mask = context(vlm, [tokenizer.chat_prompt("fox")], tokenizer.pad_id)
    vlm.lm.config.eos_token_id = -1  # never stop early: compare all 12 steps
    try:
        out = AREngine(repetition_guard=False).generate(vlm, embeds, mask, max_new_tokens=12)
    finally:
        vlm.lm.config.eos_token_id = tokenizer.eos_id
    assert out.token_ids[0] == greedy_without_cache(vlm, embeds, mask, 12)
    assert out.forwards == 12


def first_loop(tokens: list[int], min_period: int = 3, max_period: int = 32) -> int | None:
    """Reference for the loop guard: the length kept at the first step whose newest span of
    ``min_period``..``max_period`` tokens is the third copy in a row, else None."""
    for end in range(1, len(tokens) + 1):
        for period in range(min_period, min(max_period, end // 3) + 1):
            copies = [tokens[end - k * period : end - (k - 1) * period] for k in (1, 2, 3)]
            if copies[0] == copies[1] == copies[2]:
                return end - 2 * period
    return None


def guard_all(
    rows: list[list[int]], active: list[bool] | None = None, drop_every: int | None = None
) -> list[int | None]:
    """Feed ``rows`` to one LoopGuard step by step; per row, the length kept at its first loop.

    With ``drop_every``, rows that have looped leave the guard every that many steps, as
    ended rows leave an engine's batch.
    """
    out = torch.tensor(rows)
    guard = LoopGuard(len(rows), out.shape[1], out.device)
    kept: list[int | None] = [None] * len(rows)
    live = torch.tensor(active or [True] * len(rows))
    index = torch.arange(len(rows))  # the original row of each row still in the guard
    for step in range(out.shape[1]):
        for row, repeats_start in guard.update(out, step, live).items():
            kept[int(index[row])] = repeats_start
            live[row] = False
        if drop_every and step % drop_every == 0 and bool(live.any()):
            keep = live.nonzero().flatten()
            out, live, index = out[keep], live[keep], index[keep]
            guard.keep_rows(keep)
    return kept


def test_loop_guard_keeps_one_copy_of_a_span_written_three_times_in_a_row() -> None:
    sentence = [11, 12, 13, 14, 15]
    assert guard_all([[1, 2, *sentence, *sentence, *sentence, 9]]) == [7]
    assert guard_all([[1, 2, *sentence, *sentence, 9]]) == [None]  # twice is not yet a loop
    assert guard_all([[6] * 10]) == [3]  # one token again and again: kept three times
    assert guard_all([[5, 6] * 6]) == [4]  # period 2 loops with period 4
    assert guard_all([list(range(40))]) == [None]
    assert guard_all([sentence * 3, sentence * 3], active=[False, True]) == [None, 5]


def test_loop_guard_lets_a_report_name_both_sides() -> None:
    # the shipped tokenizer's ids for "Right pleural effusion. Left pleural effusion. Left
    # airspace opacity.": "pleural effusion. Left" comes twice in a row and must stay
    right, pleural, effusion, stop, left, airspace, opacity = 551, 294, 316, 20, 528, 467, 340
    report = [right, pleural, effusion, stop, left, pleural, effusion, stop, left]
    assert guard_all([[*report, airspace, opacity, stop]]) == [None]


def test_loop_guard_agrees_with_a_brute_force_search() -> None:
    generator = torch.Generator().manual_seed(0)
    # a small alphabet and copied spans make repeats of every period common
    rows = []
    for _ in range(300):
        row = torch.randint(0, 4, (40,), generator=generator).tolist()
        start, period = (int(v) for v in torch.randint(0, 15, (2,), generator=generator))
        row[start:] = (row[start : start + period + 1] * 40)[: 40 - start]
        rows.append(row + torch.randint(0, 4, (20,), generator=generator).tolist())
    expected = [first_loop(row) for row in rows]
    assert guard_all(rows) == expected
    assert guard_all(rows, drop_every=4) == expected
    assert sum(kept is None for kept in expected) > 10
    assert len({kept for kept in expected}) > 10


def test_ar_repetition_guard_ends_a_looping_row_without_the_repeat(
    random_vlm: tuple[VLM, Tokenizer],
) -> None:
    vlm, tokenizer = random_vlm
    prompts = [tokenizer.chat_prompt("the quick brown fox jumps"), tokenizer.chat_prompt("dog")]
    embeds, mask = context(vlm, prompts, tokenizer.pad_id)
    vlm.lm.config.eos_token_id = -1  # only the guard or the cap can end a row
    try:
        looping = AREngine(repetition_guard=False).generate(vlm, embeds, mask, max_new_tokens=40)
        guarded = AREngine().generate(vlm, embeds, mask, max_new_tokens=40)
    finally:
        vlm.lm.config.eos_token_id = tokenizer.eos_id
    kept = [first_loop(row) for row in looping.token_ids]
    assert all(length is not None for length in kept)  # random weights loop at once
    assert guarded.token_ids == [row[:n] for row, n in zip(looping.token_ids, kept, strict=True)]
    assert guarded.forwards < looping.forwards  # stopped when both rows were cut


def test_left_padded_batch_decodes_like_each_row_alone(random_vlm: tuple[VLM, Tokenizer]) -> None:
    vlm, tokenizer = random_vlm
    prompts = [tokenizer.chat_prompt("the quick brown fox jumps"), tokenizer.chat_prompt("dog")]
    embeds, mask = context(vlm, prompts, tokenizer.pad_id)
    batch = AREngine().generate(vlm, embeds, mask, max_new_tokens=10).token_ids
    for row in range(2):
        alone = (
            AREngine()
            .generate(
                vlm,
                embeds[row : row + 1, mask[row] == 1],
                mask[row : row + 1, mask[row] == 1],
                max_new_tokens=10,
            )
            .token_ids[0]
        )
        assert batch[row] == alone


def test_sampling_is_reproducible_with_a_seed_and_varies_without(
    random_vlm: tuple[VLM, Tokenizer],
) -> None:
    vlm, tokenizer = random_vlm
    embeds, mask = context(vlm, [tokenizer.chat_prompt("fox")] * 4, tokenizer.pad_id)
    first = AREngine(temperature=1.5, top_p=1.0, seed=7).generate(
        vlm, embeds, mask, max_new_tokens=8
    )
    again = AREngine(temperature=1.5, top_p=1.0, seed=7).generate(
        vlm, embeds, mask, max_new_tokens=8
    )
    other = AREngine(temperature=1.5, top_p=1.0, seed=8).generate(
        vlm, embeds, mask, max_new_tokens=8
    )
    assert first.token_ids == again.token_ids
    assert first.token_ids != other.token_ids


def test_trained_model_stops_at_eos_before_the_length_cap(trained_checkpoint: Path) -> None:
    loaded = load_checkpoint(trained_checkpoint)
    tokenizer = loaded.tokenizer
    image, record = synthetic_study(7)
    ids = torch.tensor([tokenizer.chat_prompt(REPORT_PROMPT)])
    embeds, mask = loaded.vlm.build_context(
        torch.tensor(image)[None, None], ids, torch.ones_like(ids)
    )
    out = AREngine().generate(loaded.vlm, embeds, mask, max_new_tokens=48)
    assert tokenizer.eos_id not in out.token_ids[0]
    assert len(out.token_ids[0]) < 48 and out.forwards == len(out.token_ids[0]) + 1
    assert tokenizer.decode(out.token_ids[0]) == record.report_text


def test_ended_reports_leave_the_batch_and_the_others_are_unchanged(
    trained_checkpoint: Path,
) -> None:
    """The six reports differ in length (the side named, or a clear chest): once some end,
    later forwards carry only the rows still writing, and every report is what it was."""
    loaded = load_checkpoint(trained_checkpoint)
    tokenizer, vlm = loaded.tokenizer, loaded.vlm
    images, records = zip(*(synthetic_study(index) for index in range(6)), strict=True)
    ids = torch.tensor([tokenizer.chat_prompt(REPORT_PROMPT)] * 6)
    embeds, mask = vlm.build_context(
        torch.tensor(np.stack(images))[:, None], ids, torch.ones_like(ids)
    )
    rows: list[int] = []
    vlm.lm.model.register_forward_hook(
        lambda _m, _a, kwargs, _o: rows.append(len(kwargs["attention_mask"])), with_kwargs=True
    )
    dropping = AREngine().generate(vlm, embeds, mask, max_new_tokens=48)
    dropped_rows = list(rows)
    keeping = AREngine()
    keeping.drop_finished_rows = False
    kept = keeping.generate(vlm, embeds, mask, max_new_tokens=48)
    assert dropped_rows[0] == 6 and dropped_rows[-1] < 6
    assert dropped_rows == sorted(dropped_rows, reverse=True)
    assert set(rows[len(dropped_rows) :]) == {6}
    assert dropping.token_ids == kept.token_ids and dropping.forwards == kept.forwards
    assert [tokenizer.decode(row) for row in dropping.token_ids] == [
        record.report_text for record in records
    ]


def test_unknown_engine_and_bad_options_are_engine_errors() -> None:
    with pytest.raises(EngineError, match="unknown engine"):
        get_engine("beam-search")
    with pytest.raises(EngineError, match="top_p"):
        get_engine("ar", top_p=0.0)
    with pytest.raises(EngineError, match="engine 'ar' has no option 'beams'"):
        get_engine("ar", beams=4)
    with pytest.raises(EngineError, match="order must be one of"):
        get_engine("diffusion-multistep", order="right-to-left")


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("diffusion-onestep", {"report_ngrams": "maybe"}, "'report_ngrams' .* takes bool"),
        ("diffusion-multistep", {"steps": 2.5}, "'steps' .* takes int or null"),
        ("diffusion-multistep", {"steps": True}, "'steps' .* takes int or null"),
        ("ar", {"temperature": "hot"}, "'temperature' .* takes float"),
    ],
)
def test_an_option_of_the_wrong_type_is_refused(
    name: str, options: dict[str, object], message: str
) -> None:
    """Options arrive as text; a string flag would be silently true, a float step count would
    fail mid-decode."""
    with pytest.raises(EngineError, match=message):
        get_engine(name, **options)


@pytest.mark.parametrize(
    ("name", "options", "valid"),
    [
        (
            "diffusion-onestep",
            {"steps": 2},
            "block_size, repetition_guard, report_ngrams, ngram_candidates, ngram_penalty",
        ),
        (
            "ar",
            {"order": "left-to-right", "beams": 4},
            "temperature, top_p, seed, repetition_guard",
        ),
        (
            "diffusion-multistep",
            {"report_ngrams": False},
            "block_size, steps, threshold, repetition_guard, order",
        ),
    ],
)
def test_an_option_the_engine_does_not_take_is_named_with_those_it_takes(
    name: str, options: dict[str, object], valid: str
) -> None:
    """Issue 34: ``--engine-option steps=2`` on the one-step engine said only "__init__() got an
    unexpected keyword argument 'steps'"; the message names every option the engine takes."""
    unknown = ", ".join(repr(key) for key in sorted(options))
    with pytest.raises(EngineError) as raised:
        get_engine(name, **options)
    assert str(raised.value) == f"engine {name!r} has no option {unknown}; its options are {valid}"


def test_the_registry_names_each_engine_by_the_name_it_reports() -> None:
    """Named in one dict, not registered by importing a module: every engine is there at once."""
    assert {
        "ar": AREngine,
        "diffusion-multistep": MultiStepEngine,
        "diffusion-onestep": OneStepEngine,
    } == ENGINES
    assert all(get_engine(name).name == name for name in ENGINES)


def test_options_of_the_declared_types_are_taken() -> None:
    multistep = get_engine("diffusion-multistep", steps=None, threshold=1)  # an int for a float
    assert isinstance(multistep, MultiStepEngine) and multistep.threshold == 1
    ar = get_engine("ar", seed=None, temperature=0)
    assert isinstance(ar, AREngine) and ar.temperature == 0 and ar.seed is None


def test_an_engine_records_every_option_it_decodes_with_defaults_included() -> None:
    assert get_engine("ar").options == {
        "temperature": 0.0,
        "top_p": 0.9,
        "seed": None,
        "repetition_guard": True,
    }
    one_step = get_engine("diffusion-onestep", ngram_candidates=8).options
    assert one_step == {
        "block_size": None,
        "repetition_guard": True,
        "report_ngrams": True,
        "ngram_candidates": 8,
        "ngram_penalty": 10.0,
    }
