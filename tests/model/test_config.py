from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.config import ConfigError, TrainConfig, VLMConfig

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
