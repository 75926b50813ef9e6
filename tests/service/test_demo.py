"""``echocxr demo``, the README's first command, run for real on the shipped checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from click.testing import Result
from typer.testing import CliRunner

import model
from service.cli import app
from tests.dicom.factories import processing_equipment

pytestmark = pytest.mark.e2e


def test_demo_drafts_a_phantom_study_with_the_shipped_default_model(tmp_path: Path) -> None:
    assert model.shipped_checkpoint(model.DEFAULT_ENGINE) is not None, "default model not shipped"
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "report" / "report.json").read_text())
    assert summary["engine"] == model.DEFAULT_ENGINE
    assert "DRAFT (machine-generated, preliminary" in result.output
    assert f"FINDINGS: {summary['findings']}" in result.output
    sr = pydicom.dcmread(tmp_path / "report" / "report.sr.dcm")
    assert sr.PreliminaryFlag == "PRELIMINARY" and sr.CompletionFlag == "PARTIAL"
    source = pydicom.dcmread(tmp_path / "study" / "image.dcm")
    assert sr.StudyInstanceUID == source.StudyInstanceUID
    assert "phantom ground truth" in result.output


def draft_with(tmp_path: Path, name: str, args: list[str], env: dict[str, str]) -> Result:
    """`echocxr report --json` on a phantom study, into ``tmp_path / name``."""
    from model.data.phantom import sample_case
    from model.data.phantom.dicom_export import write_dicom

    study = write_dicom(sample_case(0, 3), tmp_path / "study.dcm", downscale=8)
    return CliRunner().invoke(
        app, ["report", str(study), "--out", str(tmp_path / name), "--json", *args], env=env
    )


@pytest.mark.parametrize("engine", sorted(model.SHIPPED_CHECKPOINTS))
def test_every_engine_drafts_from_its_shipped_checkpoint(engine: str, tmp_path: Path) -> None:
    """ECHOCXR_ENGINE switches `echocxr report` to any engine, each on its own stage's weights."""
    result = draft_with(tmp_path, "out", [], {"ECHOCXR_ENGINE": engine})
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["engine"] == engine and summary["findings"]
    stage = json.loads((model.SHIPPED_CHECKPOINTS[engine] / "config.json").read_text())
    assert model.ENGINE_FOR_STAGE[stage["stage"]] == engine


NOT_AN_ENGINE_DEFAULT = sorted(
    {p.name for p in model.CHECKPOINTS.iterdir() if p.is_dir()}
    - {p.name for p in model.SHIPPED_CHECKPOINTS.values()}
)


@pytest.mark.parametrize("checkpoint", NOT_AN_ENGINE_DEFAULT)
def test_a_shipped_checkpoint_no_engine_defaults_to_drafts_with_its_stages_engine(
    checkpoint: str, tmp_path: Path
) -> None:
    """`--checkpoint` alone picks the engine of the checkpoint's stage (dcd-b8: one step)."""
    directory = model.CHECKPOINTS / checkpoint
    result = draft_with(tmp_path, "out", ["--checkpoint", str(directory)], {})
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    config = json.loads((directory / "config.json").read_text())
    assert summary["model_id"] == config["model_id"] and summary["findings"]
    assert summary["engine"] == model.ENGINE_FOR_STAGE[config["stage"]]


def test_engine_options_reach_the_engine_and_the_reports_provenance(tmp_path: Path) -> None:
    """One step per block instead of S = B: fewer forwards, and report.json says why."""
    env = {"ECHOCXR_ENGINE": "diffusion-multistep"}
    default = draft_with(tmp_path, "default", [], env)
    one_step = draft_with(tmp_path, "one-step", ["--engine-option", "steps=1"], env)
    from_env = draft_with(
        tmp_path, "env", [], env | {"ECHOCXR_ENGINE_OPTIONS": "steps=1 threshold=0.5"}
    )
    assert default.exit_code == one_step.exit_code == from_env.exit_code == 0, from_env.output
    default_json, one_step_json = json.loads(default.output), json.loads(one_step.output)
    # every option is recorded, the defaults too: a default may change between versions
    defaults = {
        "block_size": None,
        "steps": None,
        "threshold": 0.85,
        "repetition_guard": True,
        "order": "confidence",
    }
    assert default_json["engine_options"] == defaults
    assert one_step_json["engine_options"] == defaults | {"steps": 1}
    from_env_options = json.loads(from_env.output)["engine_options"]
    assert from_env_options == defaults | {"steps": 1, "threshold": 0.5}
    assert one_step_json["timings"]["forwards"] < default_json["timings"]["forwards"]
    srs = [pydicom.dcmread(tmp_path / name / "report.sr.dcm") for name in ("default", "one-step")]
    assert srs[0].SOPInstanceUID != srs[1].SOPInstanceUID  # other text, so another instance
    described = processing_equipment(srs[1]).ContributionDescription
    assert described.endswith(
        '; decoding diffusion-multistep block_size=null order="confidence" '
        "repetition_guard=true steps=1 threshold=0.85"
    )


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("steps", "KEY=VALUE"),
        ("temperature=0.7", "has no option 'temperature'; its options are block_size"),
        ("report_ngrams=maybe", "takes bool"),
    ],
)
def test_a_bad_engine_option_is_refused_before_anything_is_written(
    tmp_path: Path, option: str, message: str
) -> None:
    result = draft_with(
        tmp_path, "out", ["--engine-option", option], {"ECHOCXR_ENGINE": "diffusion-onestep"}
    )
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
