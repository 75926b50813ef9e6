from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from model.config import ConfigError, TrainConfig, VLMConfig
from model.diffusion import RADConfig
from model.distill import DCDConfig

pytestmark = pytest.mark.unit


def test_vlm_config_json_round_trip_keeps_every_field() -> None:
    config = VLMConfig(image_size=128, stage="rad", block_size=4)
    again = VLMConfig.from_json(config.to_json())
    assert again == config
    assert again.vision.channels == config.vision.channels


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stage": "gpt"}, "stage"),
        ({"stage": "rad"}, "block_size"),
        ({"block_size": 4}, "None"),
        ({"image_size": 100}, "multiple"),
    ],
)
def test_inconsistent_config_is_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        VLMConfig(**kwargs)  # type: ignore[arg-type]


def test_unknown_key_in_model_config_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="imgsize"):
        VLMConfig.from_dict({"imgsize": 128})


def test_shipped_recipe_parses_and_matches_its_architecture() -> None:
    recipe = TrainConfig.from_file(Path("model/configs/ar-tiny.json"))
    assert recipe.model.image_size == 128
    assert recipe.model.num_visual_tokens == 16 + 14  # 4x4 grid + one token per finding
    assert recipe.label_loss_weight > 0
    assert recipe.model.text.hidden_size == 256


def test_missing_or_broken_recipe_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        TrainConfig.from_file(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"epochz": 3}))
    with pytest.raises(ConfigError, match="epochz"):
        TrainConfig.from_file(bad)


@pytest.mark.parametrize("recipe", [TrainConfig, RADConfig, DCDConfig])
def test_every_stage_refuses_a_report_form_the_phantom_cannot_write(recipe: type) -> None:
    with pytest.raises(
        ConfigError, match=r"phantom_reports must be one of \('mixed', 'canonical'\)"
    ):
        recipe(phantom_reports="terse")


def test_canonical_recipes_differ_from_the_shipped_ones_only_in_wording_and_inputs() -> None:
    """The normalisation experiment compares wordings, so every other setting is the shipped one,
    and each stage starts from the canonical stage before it."""
    shipped, canonical = Path("model/configs"), Path("model/configs/canonical")
    previous = {
        "ar-tiny.json": None,
        "rad-b8.json": "runs/canonical/ar-tiny/checkpoint",
        "rad-b8-more.json": "runs/canonical/rad-b8/checkpoint",
        "dcd-b8.json": "runs/canonical/rad-b8-more/checkpoint",
    }
    assert sorted(p.name for p in canonical.glob("*.json")) == sorted(previous)
    for name, start in previous.items():
        ours, theirs = (json.loads((d / name).read_text()) for d in (canonical, shipped))
        assert ours.pop("phantom_reports") == "canonical"
        assert theirs.pop("phantom_reports", "mixed") == "mixed"
        key = "teacher_checkpoint" if name.startswith("dcd") else "init_checkpoint"
        assert ours.pop(key, None) == start
        theirs.pop(key, None)
        assert ours == theirs, name


def test_every_recipe_the_rebuild_script_names_exists_and_reads() -> None:
    script = Path("scripts/rebuild-checkpoints.sh").read_text()
    names = {  # $b and $1 stand for B = 4 and 16 (B = 8's recipes are named in full)
        re.sub(r"\$(b|1)", b, name)
        for name in re.findall(r"model/configs/([\w$-]+)\.json", script)
        for b in ("4", "16")
    }
    assert "dcd-l2r-ngrams-b16" in names and "dcd-l2r-ngrams-b8" in names
    readers = {"ar": TrainConfig.from_file, "rad": RADConfig.from_file, "dcd": DCDConfig.from_file}
    for name in sorted(names):
        readers[name.split("-")[0]](Path(f"model/configs/{name}.json"))


@pytest.mark.parametrize("b", [4, 16])
def test_other_block_sizes_reuse_the_shipped_recipes_from_the_shipped_teacher(b: int) -> None:
    """B = 4 and 16 claim the B = 8 stage-3 recipes; only the teacher and its rollouts differ."""
    configs = Path("model/configs")
    rad = RADConfig.from_file(configs / f"rad-b{b}-from-b8.json")
    assert (rad.init_checkpoint, rad.init_block_size, rad.block_size) == (
        "model/checkpoints/rad-b8",
        8,
        b,
    )
    teacher = f"runs/rad-b{b}-from-b8/checkpoint"
    student = json.loads((configs / f"dcd-l2r-ngrams-b{b}.json").read_text())
    assert student.pop("teacher_checkpoint") == teacher
    shipped = json.loads((configs / "dcd-l2r-ngrams-b8.json").read_text())
    shipped.pop("teacher_checkpoint")
    assert student == shipped
    # the factorized baseline is B = 8's, on the rollouts of the student above
    factorized = json.loads((configs / f"dcd-factorized-b{b}-from-b8.json").read_text())
    assert factorized.pop("teacher_checkpoint") == teacher
    assert factorized.pop("trajectories") == f"runs/dcd-l2r-ngrams-b{b}/trajectories"
    assert factorized.pop("teacher_order") == student["teacher_order"]
    reference = json.loads((configs / "dcd-factorized-b8.json").read_text())
    for key in ("teacher_checkpoint", "trajectories"):
        reference.pop(key)
    assert factorized == reference
