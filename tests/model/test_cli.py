"""``echocxr report`` and ``echocxr train`` through the real command line entry point."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from model.data.phantom import sample_case
from model.data.phantom.dicom_export import write_dicom
from service.cli import app

pytestmark = pytest.mark.e2e
runner = CliRunner()


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dicom(sample_case(0, 3), tmp_path_factory.mktemp("dcm") / "study.dcm", downscale=8)


def test_report_on_a_phantom_dicom_prints_and_writes_the_draft(
    study: Path, trained_checkpoint: Path, tmp_path: Path
) -> None:
    command = ["report", str(study), "--checkpoint", str(trained_checkpoint), "--engine", "ar"]
    result = runner.invoke(app, [*command, "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("FINDINGS:") and "\nIMPRESSION:" in result.output
    written = sorted(path.name for path in (tmp_path / "a").iterdir())
    assert written == ["report.fhir.json", "report.json", "report.pdf.dcm", "report.sr.dcm"]
    as_json = runner.invoke(app, [*command, "--out", str(tmp_path / "b"), "--json"])
    summary = json.loads(as_json.output)
    assert summary["engine"] == "ar" and summary["model_id"].startswith("echocxr-")
    assert summary["findings"] and summary["study_instance_uid"]


@pytest.mark.parametrize("case", ["missing", "not_dicom", "bad_checkpoint"])
def test_report_failures_are_one_line_and_exit_2(
    case: str, study: Path, trained_checkpoint: Path, tmp_path: Path
) -> None:
    checkpoint, target = trained_checkpoint, study
    if case == "missing":
        target = tmp_path / "nope.dcm"
    elif case == "not_dicom":
        target = tmp_path / "notes.dcm"
        target.write_text("hello")
    else:
        checkpoint = Path(shutil.copytree(trained_checkpoint, tmp_path / "ckpt"))
        (checkpoint / "model.safetensors").write_bytes(b"0" * 64)
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["report", str(target), "--checkpoint", str(checkpoint), "--out", str(out)]
    )
    assert result.exit_code == 2
    assert not out.exists()
    assert "error:" in result.output and "Traceback" not in result.output


def test_train_names_a_missing_recipe(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["train", "--config", str(tmp_path / "x.json"), "--out", str(tmp_path)]
    )
    assert result.exit_code == 2 and "does not exist" in result.output


def test_fit_trust_refuses_a_checkpoint_without_a_finding_head_in_one_line(
    trained_checkpoint: Path,
) -> None:
    result = runner.invoke(app, ["fit-trust", "--checkpoint", str(trained_checkpoint)])
    assert result.exit_code == 2
    assert "no finding head" in result.output and "Traceback" not in result.output
