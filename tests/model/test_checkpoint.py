from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from model.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
    write_metrics,
)
from tests.model.conftest import pid_of_a_finished_process

pytestmark = pytest.mark.unit


@pytest.fixture()
def copy(trained_checkpoint: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained_checkpoint, tmp_path / "ckpt"))


def edit_manifest(directory: Path, **changes: object) -> None:
    manifest = json.loads((directory / CONFIG_FILE).read_text())
    manifest.update(changes)
    (directory / CONFIG_FILE).write_text(json.dumps(manifest))


def test_manifest_records_provenance(trained_checkpoint: Path) -> None:
    manifest = json.loads((trained_checkpoint / CONFIG_FILE).read_text())
    assert manifest["stage"] == "ar" and manifest["weights"]["dtype"] == "float16"
    assert len(manifest["training_data_sha256"]) == 64
    assert manifest["image_preprocessing"]["image_size"] == 32
    assert manifest["model"]["text"]["llama"]["num_hidden_layers"] == 2


def test_loaded_weights_equal_the_float16_rounding_of_the_trained_ones(copy: Path) -> None:
    from safetensors.torch import load_file

    stored = load_file(str(copy / WEIGHTS_FILE))
    loaded = load_checkpoint(copy)
    state = loaded.vlm.state_dict()
    for name, tensor in stored.items():
        assert state[name].dtype == torch.float32
        torch.testing.assert_close(state[name], tensor.float(), rtol=0, atol=0)
    assert (
        loaded.vlm.lm.lm_head.weight.data_ptr()
        == loaded.vlm.lm.get_input_embeddings().weight.data_ptr()
    )


def test_truncated_weights_are_reported_as_corrupt(copy: Path) -> None:
    data = (copy / WEIGHTS_FILE).read_bytes()
    (copy / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or was replaced"):
        load_checkpoint(copy)


def test_swapped_tokenizer_is_detected(copy: Path) -> None:
    path = copy / "tokenizer.json"
    path.write_text(path.read_text().replace("opacity", "opacitx"))
    with pytest.raises(CheckpointError, match=r"tokenizer\.json does not match"):
        load_checkpoint(copy)


def test_architecture_edited_by_hand_fails_on_shapes(copy: Path) -> None:
    manifest = json.loads((copy / CONFIG_FILE).read_text())
    manifest["model"]["text"]["llama"]["hidden_size"] = 96
    (copy / CONFIG_FILE).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_checkpoint(copy)


def test_other_format_version_and_missing_files_are_clear_errors(
    copy: Path, tmp_path: Path
) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")
    edit_manifest(copy, format_version=99)
    with pytest.raises(CheckpointError, match="format 99"):
        load_checkpoint(copy)
    (copy / CONFIG_FILE).write_text("{")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(copy)
    (copy / CONFIG_FILE).unlink()
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        load_checkpoint(copy)


def test_write_metrics_merges_with_what_training_wrote(copy: Path) -> None:
    write_metrics(copy, {"macro_f1": 0.5})
    metrics = json.loads((copy / "metrics.json").read_text())
    assert metrics["macro_f1"] == 0.5 and "history" in metrics


def test_saving_replaces_the_checkpoint_and_clears_a_killed_writers_files(copy: Path) -> None:
    """A training run killed while saving left ``<name>.partial`` behind for good; the next save
    of the same checkpoint now deletes what a writer that no longer runs left."""
    abandoned = copy.with_name(f"{copy.name}.partial-{pid_of_a_finished_process()}")
    abandoned.mkdir()
    loaded = load_checkpoint(copy)
    save_checkpoint(copy, loaded.vlm, loaded.tokenizer, model_id="resaved", data_sha256="0" * 64)
    assert sorted(p.name for p in copy.parent.iterdir()) == [copy.name]
    assert load_checkpoint(copy).model_id == "resaved"
