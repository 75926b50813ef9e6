"""The report n-gram table, the lattice decode against brute force, and their checkpoint file."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from model.checkpoint import (
    CONFIG_FILE,
    CheckpointError,
    add_report_ngrams,
    load_checkpoint,
    read_manifest,
)
from model.report_ngrams import NGRAMS_FILE, ReportNgrams, ReportNgramsError, lattice_decode
from service.cli import app

pytestmark = pytest.mark.unit

VOCAB, START, EOS = 12, 0, 11


def random_table(order: int, seed: int) -> ReportNgrams:
    generator = torch.Generator().manual_seed(seed)
    reports = [[*torch.randint(1, EOS, (15,), generator=generator).tolist(), EOS] for _ in range(6)]
    return ReportNgrams.from_reports(reports, order, VOCAB, START)


def brute_force(
    logits: torch.Tensor, history: list[int], ngrams: ReportNgrams, candidates: int, penalty: float
) -> list[int]:
    """Every path through the top ``candidates`` of each position, scored one by one."""
    log_probs = logits.log_softmax(-1)
    top = log_probs.topk(candidates, -1).indices.tolist()
    best, best_path = float("-inf"), None
    for path in itertools.product(*top):
        score = sum(float(log_probs[i, token]) for i, token in enumerate(path))
        tokens = [*history, *path]
        for end in range(ngrams.order - 1, len(tokens)):
            gram = tokens[end - ngrams.order + 1 : end + 1]
            if EOS not in gram[:-1] and tuple(gram) not in ngrams:
                score -= penalty
        if score > best + 1e-6:
            best, best_path = score, list(path)
    assert best_path is not None
    return best_path


@pytest.mark.parametrize("order", [2, 3, 4])
def test_lattice_decode_finds_the_best_path_brute_force_finds(order: int) -> None:
    ngrams = random_table(order, seed=order)
    generator = torch.Generator().manual_seed(10 + order)
    for _ in range(10):
        logits = torch.randn(3, 5, VOCAB, generator=generator) * 2
        history = torch.randint(0, VOCAB, (3, order - 1), generator=generator)
        history[0] = START  # a report's first block
        decoded = lattice_decode(logits, history, ngrams, eos_id=EOS, candidates=3, penalty=3.0)
        for row in range(3):
            expected = brute_force(logits[row], history[row].tolist(), ngrams, 3, 3.0)
            assert decoded[row].tolist() == expected


def test_an_argmax_the_reports_hold_is_kept_and_a_doubled_word_is_not() -> None:
    ngrams = ReportNgrams.from_reports([[5, 6, 7, 8, EOS]], 3, VOCAB, START)
    logits = torch.zeros(1, 5, VOCAB)
    logits[0, torch.arange(5), torch.tensor([5, 6, 7, 8, EOS])] = 4.0
    history = ngrams.start(1, torch.device("cpu"))
    assert lattice_decode(
        logits, history, ngrams, eos_id=EOS, candidates=2, penalty=10.0
    ).tolist() == [[5, 6, 7, 8, EOS]]
    logits[0, 2, 6] = 5.0  # position 2 now prefers to write 6 again: "5 6 6 8"
    decoded = lattice_decode(logits, history, ngrams, eos_id=EOS, candidates=2, penalty=10.0)
    assert decoded.tolist() == [[5, 6, 7, 8, EOS]]
    free = lattice_decode(logits, history, ngrams, eos_id=EOS, candidates=2, penalty=0.0)
    assert free.tolist() == [[5, 6, 6, 8, EOS]]  # no penalty: the argmax


def test_the_table_holds_each_reports_ngrams_from_its_start_and_nothing_else() -> None:
    ngrams = ReportNgrams.from_reports([[5, 6, 7, EOS], [6, 5, EOS]], 3, VOCAB, START)
    assert (START, START, 5) in ngrams and (START, 5, 6) in ngrams and (7, EOS) not in ngrams
    assert (6, 7, EOS) in ngrams and (6, 5, EOS) in ngrams
    assert (START, START, 7) not in ngrams  # no report begins with 7
    assert (5, 6, 6) not in ngrams
    assert len(ngrams.keys) == 4 + 3


def test_the_table_moves_to_the_device_asked_for_and_stays_put_when_it_is_there() -> None:
    """On a GPU the one-step engine looks n-grams up beside the logits (``OneStepEngine``
    moves the table to the model's device); the meta device stands in for one here."""
    ngrams = random_table(3, seed=0)
    moved = ngrams.to(torch.device("meta"))

    assert moved.keys.device.type == "meta" and moved.keys.shape == ngrams.keys.shape
    assert (moved.order, moved.vocab_size, moved.start_id) == (3, VOCAB, START)
    assert ngrams.keys.device.type == "cpu"  # a copy moved, the original stays
    assert ngrams.to(torch.device("cpu")) is ngrams


def test_the_table_survives_its_file_and_a_damaged_one_is_named(tmp_path: Path) -> None:
    ngrams = random_table(3, seed=0)
    path = ngrams.save(tmp_path)
    loaded = ReportNgrams.load(path)
    assert (loaded.order, loaded.vocab_size, loaded.start_id) == (3, VOCAB, START)
    assert torch.equal(loaded.keys, ngrams.keys)
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(ReportNgramsError, match="cannot read the report n-grams"):
        ReportNgrams.load(path)
    with pytest.raises(ReportNgramsError, match="no report"):
        ReportNgrams.from_reports([], 3, VOCAB, START)


@pytest.fixture()
def copy(trained_checkpoint: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained_checkpoint, tmp_path / "ckpt"))


def test_a_checkpoint_gets_the_table_without_touching_its_weights(copy: Path) -> None:
    before = read_manifest(copy)
    tokenizer = load_checkpoint(copy).tokenizer
    assert load_checkpoint(copy).vlm.report_ngrams is None
    ngrams = ReportNgrams.of_texts(["FINDINGS: Opacity in the left lung."], tokenizer)
    add_report_ngrams(copy, ngrams)
    after = read_manifest(copy)
    assert after["weights"] == before["weights"]
    assert after["report_ngrams"]["order"] == 3
    assert after["report_ngrams"]["count"] == len(ngrams.keys)
    loaded = load_checkpoint(copy).vlm.report_ngrams
    assert loaded is not None and torch.equal(loaded.keys, ngrams.keys)
    (copy / NGRAMS_FILE).write_bytes(random_table(3, seed=1).save(copy.parent).read_bytes())
    with pytest.raises(CheckpointError, match="corrupt or was replaced"):
        load_checkpoint(copy)
    other = ReportNgrams(3, tokenizer.vocab_size + 1, 0, ngrams.keys)
    with pytest.raises(CheckpointError, match="vocabulary"):
        add_report_ngrams(copy, other)


def test_report_ngrams_command_reads_the_recipes_training_reports(
    copy: Path, tmp_path: Path
) -> None:
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"train_studies": 6, "phantom_seed": 0}))
    result = CliRunner().invoke(app, ["report-ngrams", str(copy), "--config", str(recipe)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((copy / CONFIG_FILE).read_text())
    assert f"{manifest['report_ngrams']['count']} report 3-grams" in result.output
    args = ["report-ngrams", str(copy), "--config", str(recipe), "--order", "4"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    fourgrams = load_checkpoint(copy).vlm.report_ngrams
    assert fourgrams is not None and fourgrams.order == 4
    recipe.write_text(json.dumps({"phantom_seed": 0}))
    result = CliRunner().invoke(app, ["report-ngrams", str(copy), "--config", str(recipe)])
    assert result.exit_code == 2 and "does not say which studies" in result.output
    recipe.write_text(json.dumps({"train_studies": 6}))
    missing = str(tmp_path / "none")
    result = CliRunner().invoke(app, ["report-ngrams", missing, "--config", str(recipe)])
    assert result.exit_code == 2 and "does not exist" in result.output
