from __future__ import annotations

from pathlib import Path

import pytest

from model.tokenizer import SPECIAL_TOKENS, Tokenizer, TokenizerError, pad_rows

pytestmark = pytest.mark.unit

TEXTS = ["FINDINGS: Small left pleural effusion. IMPRESSION: Left effusion."] * 5 + [
    "FINDINGS: The lungs are clear. IMPRESSION: No acute cardiopulmonary process."
] * 5


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.train(TEXTS, vocab_size=300)


def test_round_trip_including_text_never_seen_in_training(tokenizer: Tokenizer) -> None:
    for text in [*TEXTS[:1], "Pneumothorax, 2 cm — ünseen"]:
        assert tokenizer.decode(tokenizer.encode(text)) == text


def test_special_tokens_have_distinct_ids_and_are_single_tokens(tokenizer: Tokenizer) -> None:
    ids = [
        tokenizer.pad_id,
        tokenizer.bos_id,
        tokenizer.eos_id,
        tokenizer.mask_id,
        tokenizer.image_id,
        tokenizer.user_id,
        tokenizer.assistant_id,
    ]
    assert len(set(ids)) == len(SPECIAL_TOKENS)
    assert tokenizer.encode("<mask>") == [tokenizer.mask_id]


def test_trained_vocabulary_compresses_report_words(tokenizer: Tokenizer) -> None:
    text = TEXTS[0]
    assert len(tokenizer.encode(text)) < len(text) / 3


def test_decode_stops_at_eos_and_hides_special_tokens(tokenizer: Tokenizer) -> None:
    ids = [
        tokenizer.bos_id,
        *tokenizer.encode("Left effusion."),
        tokenizer.eos_id,
        *tokenizer.encode("junk"),
    ]
    assert tokenizer.decode(ids) == "Left effusion."


def test_chat_prompt_orders_history_then_question(tokenizer: Tokenizer) -> None:
    ids = tokenizer.chat_prompt("Which side?", [("Is there an effusion?", "Yes.")])
    assert ids[0] == tokenizer.user_id and ids[-1] == tokenizer.assistant_id
    assert ids.count(tokenizer.user_id) == 2 and ids.count(tokenizer.eos_id) == 1
    assert tokenizer.decode(ids[ids.index(tokenizer.eos_id) + 1 :]) == "Which side?"


def test_save_load_gives_identical_ids(tokenizer: Tokenizer, tmp_path: Path) -> None:
    tokenizer.save(tmp_path)
    again = Tokenizer.load(tmp_path)
    assert again.encode(TEXTS[-1]) == tokenizer.encode(TEXTS[-1])
    assert again.mask_id == tokenizer.mask_id


def test_missing_or_corrupt_tokenizer_file_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match=r"no tokenizer\.json"):
        Tokenizer.load(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="cannot read"):
        Tokenizer.load(tmp_path)


def test_pad_rows_left_and_right() -> None:
    ids, mask = pad_rows([[5, 6, 7], [8]], pad_id=0, left=True)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    ids, mask = pad_rows([[5, 6, 7], [8]], pad_id=0, left=False)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
