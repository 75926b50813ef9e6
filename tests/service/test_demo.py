"""``echocxr demo``, the README's first command, run for real on the shipped checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from typer.testing import CliRunner

import model
from service.cli import app

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


@pytest.mark.parametrize("engine", sorted(model.SHIPPED_CHECKPOINTS))
def test_every_engine_drafts_from_its_shipped_checkpoint(engine: str, tmp_path: Path) -> None:
    """ECHOCXR_ENGINE switches `echocxr report` to any engine, each on its own stage's weights."""
    from model.data.phantom import sample_case
    from model.data.phantom.dicom_export import write_dicom

    study = write_dicom(sample_case(0, 3), tmp_path / "study.dcm", downscale=8)
    result = CliRunner().invoke(
        app,
        ["report", str(study), "--out", str(tmp_path / "out"), "--json"],
        env={"ECHOCXR_ENGINE": engine},
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["engine"] == engine and summary["findings"]
    stage = json.loads((model.SHIPPED_CHECKPOINTS[engine] / "config.json").read_text())
    assert model.ENGINE_FOR_STAGE[stage["stage"]] == engine
