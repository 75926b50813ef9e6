"""``echocxr ingest`` through the real command-line app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.cli import app
from tests.dicom.factories import PATIENT_NAME, radiograph, save

pytestmark = pytest.mark.e2e


def test_ingest_prints_images_and_set_asides_as_json(tmp_path: Path) -> None:
    save(radiograph(view="PA"), tmp_path / "pa.dcm")
    save(radiograph(view="LL"), tmp_path / "ll.dcm")
    result = CliRunner().invoke(app, ["ingest", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    (image,) = summary["frontal_images"]
    assert (image["rows"], image["columns"], image["view_position"]) == (96, 128, "PA")
    assert image["pixel_spacing_source"] == "ImagerPixelSpacing"
    assert "ViewPosition is 'LL'" in summary["set_aside"][0]["reason"]
    assert PATIENT_NAME not in result.output


def test_ingest_refusal_is_one_line_and_nonzero(tmp_path: Path) -> None:
    path = save(radiograph(BodyPartExamined="SKULL"), tmp_path / "skull.dcm")
    result = CliRunner().invoke(app, ["ingest", str(path)])
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "(0018,0015) BodyPartExamined is 'SKULL'" in result.stderr
    assert "Traceback" not in result.output
