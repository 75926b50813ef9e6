from __future__ import annotations

import json
import re
from dataclasses import replace
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
        ({"image_size": 102}, "multiple"),
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


def test_the_config_defaults_are_the_shipped_recipes() -> None:
    """A default that contradicts what ships misleads whoever writes the next recipe."""
    configs = Path("model/configs")
    assert TrainConfig() == TrainConfig.from_file(configs / "ar-tiny.json")
    assert DCDConfig() == DCDConfig.from_file(configs / "dcd-b8.json")
    dcd_b4 = DCDConfig.from_file(configs / "dcd-b4.json")
    assert replace(DCDConfig(), teacher_checkpoint=dcd_b4.teacher_checkpoint) == dcd_b4
    for name in ("rad-b8-start", "rad-b8", "rad-b4"):  # RAD's defaults: the fields they share
        recipe = RADConfig.from_file(configs / f"{name}.json")
        run = {key: getattr(recipe, key) for key in ("init_checkpoint", "block_size", "steps")}
        assert recipe == RADConfig(**run, lr=recipe.lr, init_block_size=recipe.init_block_size), (
            name
        )


def test_each_shipped_checkpoint_has_one_recipe_named_after_it() -> None:
    readers = {"ar": TrainConfig.from_file, "rad": RADConfig.from_file, "dcd": DCDConfig.from_file}
    configs = Path("model/configs")
    for checkpoint in sorted(Path("model/checkpoints").iterdir()):
        recipes = list(configs.glob(f"{checkpoint.name}.json"))
        assert len(recipes) == 1, checkpoint.name
        readers[checkpoint.name.split("-")[0]](recipes[0])


def test_the_rebuild_script_runs_every_recipe_after_the_run_it_starts_from() -> None:
    script = Path("scripts/rebuild-checkpoints.sh").read_text().replace("\\\n", " ")
    found = re.findall(
        r'--config "?model/configs/([\w$-]+)\.json"?\s+--out "?runs/([\w$-]+)', script
    )
    runs = [(recipe.replace("$b", b), out.replace("$b", b)) for recipe, out in found for b in "84"]
    runs = list(dict.fromkeys(runs))  # a name without $b expands once
    assert sorted(recipe for recipe, _ in runs) == sorted(
        path.stem for path in Path("model/configs").glob("*.json")
    )
    for index, (recipe, _) in enumerate(runs):
        data = json.loads(Path(f"model/configs/{recipe}.json").read_text())
        start = data.get("init_checkpoint") or data.get("teacher_checkpoint")
        if start and start.startswith("runs/"):
            assert start.split("/")[1] in {out for _, out in runs[:index]}, recipe
        elif start:
            assert Path(start, "config.json").is_file(), recipe


def test_the_factorized_baselines_train_on_their_students_rollouts() -> None:
    """Each baseline differs from its student's recipe only in its target, weighting and round."""
    configs = Path("model/configs")
    for b in (4, 8):
        student = DCDConfig.from_file(configs / f"dcd-b{b}.json")
        baseline = DCDConfig.from_file(configs / f"dcd-factorized-b{b}.json")
        assert baseline.trajectories == f"runs/dcd-b{b}/trajectories"
        assert baseline == replace(
            student,
            target="factorized",
            step_weighting=False,
            trajectories=baseline.trajectories,
            student_prefix_studies=0,
        )
