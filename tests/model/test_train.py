from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from model.config import TrainConfig
from model.data.datasets import StudyDataset
from model.tokenizer import Tokenizer
from model.train import STATE_FILE, Trainer, collate, lr_at, response_loss
from model.vlm import VLM
from tests.model.conftest import synthetic_study, tiny_model_config

pytestmark = pytest.mark.unit


def final_weights(checkpoint: Path | None) -> dict[str, torch.Tensor]:
    assert checkpoint is not None
    return load_file(str(checkpoint / "model.safetensors"))


@pytest.mark.parametrize("finding_forcing", [0.0, 0.5])
def test_interrupted_run_resumed_ends_with_the_same_weights(
    finding_forcing: float,
    tiny_recipe: TrainConfig,
    synthetic_caches: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    if finding_forcing:  # which studies see their true findings must replay identically too
        tiny_recipe.model.vision.finding_tokens = True
        tiny_recipe.finding_forcing = finding_forcing
    whole = Trainer(tiny_recipe, tmp_path / "whole", 3, synthetic_caches).fit()
    # killed at step 7: the snapshot of step 4 survives, steps 5-7 are lost and redone
    assert Trainer(tiny_recipe, tmp_path / "cut", 3, synthetic_caches).fit(stop_after=7) is None
    assert torch.load(tmp_path / "cut" / STATE_FILE, weights_only=False)["step"] == 4
    resumed = Trainer(tiny_recipe, tmp_path / "cut", 3, synthetic_caches).fit()
    expected, actual = final_weights(whole), final_weights(resumed)
    assert expected.keys() == actual.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(actual[name], tensor, msg=name)


def test_another_seed_gives_other_weights(
    tiny_recipe: TrainConfig, synthetic_caches: tuple[Path, Path], tmp_path: Path
) -> None:
    tiny_recipe.epochs = 1
    a = final_weights(Trainer(tiny_recipe, tmp_path / "a", 1, synthetic_caches).fit())
    b = final_weights(Trainer(tiny_recipe, tmp_path / "b", 2, synthetic_caches).fit())
    assert not torch.equal(a["projector.fc1.weight"], b["projector.fc1.weight"])


def test_validation_loss_falls_during_training(trained_checkpoint: Path) -> None:
    import json

    history = json.loads((trained_checkpoint / "metrics.json").read_text())["history"]
    assert history[-1]["val_loss"] < 0.2


def test_loss_ignores_context_and_padding_but_not_the_response(
    synthetic_caches: tuple[Path, Path],
) -> None:
    dataset = StudyDataset(synthetic_caches[0], qa_per_study=1)
    tokenizer = Tokenizer.train(
        [r.report_text for r in dataset.records] + ["Which side is the opacity?"], 300
    )
    torch.manual_seed(0)
    vlm = VLM(tiny_model_config(), tokenizer)
    batch = collate([dataset[i] for i in range(4)], tokenizer, 48)
    reference = response_loss(vlm, batch)
    rows = batch.groups[0]
    padded = rows.response_mask == 0
    rows.response_ids[padded] = tokenizer.mask_id  # garbage in padding changes nothing
    torch.testing.assert_close(response_loss(vlm, batch), reference)
    rows.response_ids[0, 0] = tokenizer.mask_id  # a wrong target does
    assert not torch.allclose(response_loss(vlm, batch), reference)


def test_collate_groups_reports_and_qa_rows_over_shared_images(
    synthetic_caches: tuple[Path, Path],
) -> None:
    dataset = StudyDataset(synthetic_caches[0], qa_per_study=1)
    tokenizer = Tokenizer.train([r.report_text for r in dataset.records], 300)
    items = [dataset[i] for i in range(6)]
    batch = collate(items, tokenizer, 48)
    reports, qa = batch.groups
    assert batch.pixels.shape == (6, 1, 32, 32)
    assert reports.image_index.tolist() == list(range(6))
    assert qa.image_index.tolist() == [i for i, item in enumerate(items) if item["qa"]]
    assert (reports.response_ids == tokenizer.eos_id).sum() == 6


def test_qa_choice_depends_on_seed_epoch_and_index_only(
    synthetic_caches: tuple[Path, Path],
) -> None:
    first, second = (
        StudyDataset(synthetic_caches[0], 1, seed=5),
        StudyDataset(synthetic_caches[0], 1, seed=5),
    )
    assert [first.pick_qa(i) for i in range(12)] == [second.pick_qa(i) for i in range(12)]
    second.set_epoch(1)
    assert [first.pick_qa(i) for i in range(12)] != [second.pick_qa(i) for i in range(12)]


def test_schedule_warms_up_then_decays_to_a_tenth() -> None:
    assert lr_at(0, 100, 1e-3, 10) == pytest.approx(1e-4)
    assert lr_at(9, 100, 1e-3, 10) == pytest.approx(1e-3)
    assert lr_at(100, 100, 1e-3, 10) == pytest.approx(1e-4)
    assert lr_at(50, 100, 1e-3, 10) < lr_at(20, 100, 1e-3, 10)


def test_synthetic_study_names_the_side_it_draws() -> None:
    image, record = synthetic_study(0)
    assert "left" in record.findings and image[:, :16].mean() > image[:, 16:].mean()


def test_run_trains_from_file_caches_named_in_the_recipe(
    tiny_recipe: TrainConfig, synthetic_caches: tuple[Path, Path], tmp_path: Path
) -> None:
    import json

    from model.train import run

    tiny_recipe.epochs = 1
    tiny_recipe.train_dir, tiny_recipe.val_dir = (str(p) for p in synthetic_caches)
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps(tiny_recipe.to_dict()))
    checkpoint = run(recipe, tmp_path / "out", 0, tmp_path / "unused-cache")
    assert checkpoint is not None and (checkpoint / "model.safetensors").is_file()
    assert not (tmp_path / "unused-cache").exists()  # nothing rendered from the phantom


def test_label_targets_follow_observation_order_with_uncertain_as_half() -> None:
    from clinical_eval.observations import OBSERVATIONS
    from model.train import label_targets

    targets = label_targets({"Pleural Effusion": 1, "Edema": -1, "Cardiomegaly": 0})
    assert len(targets) == len(OBSERVATIONS) == 14
    assert targets[OBSERVATIONS.index("Pleural Effusion")] == 1.0
    assert targets[OBSERVATIONS.index("Edema")] == 0.5
    assert sum(targets) == 1.5  # blank and negative observations are 0


def test_finding_tokens_are_trained_by_the_label_loss_and_ship_with_the_model(
    tiny_recipe: TrainConfig, synthetic_caches: tuple[Path, Path], tmp_path: Path
) -> None:
    tiny_recipe.model.vision.finding_tokens = True
    tiny_recipe.label_loss_weight = 1.0
    trainer = Trainer(tiny_recipe, tmp_path / "run", 0, synthetic_caches)
    batch = collate([trainer.train_set[i] for i in range(4)], trainer.tokenizer, 48)
    visual = trainer.vlm.embed_images(batch.pixels)
    assert visual.shape[1] == tiny_recipe.model.num_visual_tokens == 4 * 4 + 14
    only_labels = trainer.objective(batch) - response_loss(trainer.vlm, batch)
    assert only_labels > 0  # the BCE term of the finding head is added
    only_labels.backward()
    assert trainer.vlm.vision.stages[0].body[0].weight.grad.abs().sum() > 0
    trainer.optimizer.zero_grad()
    exported = final_weights(trainer.fit())
    assert "findings.head.weight" in exported and "findings.present" in exported


def test_label_loss_without_finding_tokens_is_a_config_error() -> None:
    from model.config import ConfigError

    with pytest.raises(ConfigError, match="finding_tokens"):
        TrainConfig(model=tiny_model_config(), label_loss_weight=1.0, finding_forcing=0.0)
    with pytest.raises(ConfigError, match="finding_tokens"):
        TrainConfig(model=tiny_model_config(), label_loss_weight=0.0, finding_forcing=0.5)


def test_known_findings_replace_the_heads_guess_only_where_given() -> None:
    from model.vision import FindingTokens

    torch.manual_seed(0)
    findings = FindingTokens(feature_dim=8, embed_dim=6, count=3)
    grid = torch.randn(2, 5, 8)
    guessed, logits = findings(grid)
    known = torch.tensor([[1.0, 0.0, 0.5], [float("nan")] * 3])
    forced, same_logits = findings(grid, known)
    torch.testing.assert_close(same_logits, logits)  # the head is still trained on its guess
    torch.testing.assert_close(forced[1], guessed[1])  # NaN row: the head's guess
    torch.testing.assert_close(forced[0, 0], findings.present[0])
    torch.testing.assert_close(forced[0, 1], findings.absent[1])
    torch.testing.assert_close(forced[0, 2], (findings.present[2] + findings.absent[2]) / 2)
