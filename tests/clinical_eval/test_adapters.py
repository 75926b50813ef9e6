"""Weight-needing metric adapters: unavailable with a reason, or run from a local tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest

from clinical_eval.adapters import ADAPTERS, WEIGHTS_ENV, evaluate_external

pytestmark = pytest.mark.unit

WORDS = ["no", "small", "left", "right", "pleural", "effusion", "pneumothorax", "heart", "normal"]


@pytest.fixture(scope="module")
def tiny_bert_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer BERT with random weights, saved like a downloaded checkpoint."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root = tmp_path_factory.mktemp("weights")
    folder = root / "bertscore"
    folder.mkdir()
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(WORDS) + 5,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    BertModel(config).save_pretrained(folder)
    return root


def test_without_configuration_every_adapter_is_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    for name in ADAPTERS:
        out = evaluate_external(name, ["no effusion"], ["no effusion"])
        assert out == {"available": False, "reason": out["reason"]}
        assert WEIGHTS_ENV in out["reason"]


def test_missing_files_are_named(tmp_path: Path) -> None:
    out = evaluate_external("chexbert", ["a"], ["a"], weights_dir=tmp_path)
    assert out["available"] is False
    assert "chexbert.pth" in out["reason"]


def test_bertscore_runs_from_the_local_tiny_model(tiny_bert_root: Path) -> None:
    same = evaluate_external(
        "bertscore",
        ["small left pleural effusion"],
        ["small left pleural effusion"],
        weights_dir=tiny_bert_root,
    )
    assert same["available"] is True
    assert same["bertscore_f1"] == pytest.approx(1.0, abs=1e-5)
    assert "idf=False" in same["variant"]
    different = evaluate_external(
        "bertscore", ["small left pleural effusion"], ["heart normal"], weights_dir=tiny_bert_root
    )
    assert different["bertscore_f1"] < same["bertscore_f1"]


def test_weights_from_the_environment(
    tiny_bert_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(WEIGHTS_ENV, str(tiny_bert_root))
    assert evaluate_external("bertscore", ["no effusion"], ["no pneumothorax"])["available"]


def test_unknown_metric_is_refused() -> None:
    with pytest.raises(KeyError, match="unknown external metric"):
        evaluate_external("radcliq", ["a"], ["a"])
