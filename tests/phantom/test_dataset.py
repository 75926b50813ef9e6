"""``echocxr phantom`` end to end: files, manifest, contact sheet, byte-identical reruns."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pydicom
import pytest
from PIL import Image
from typer.testing import CliRunner

from clinical_eval.observations import OBSERVATIONS
from model.data.phantom import sample_case
from service.cli import app

pytestmark = pytest.mark.integration
N = 6


def digest_tree(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, dcmcjpeg: str) -> Path:
    out = tmp_path_factory.mktemp("phantom") / "set"
    result = CliRunner().invoke(
        app, ["phantom", "--n", str(N), "--out", str(out), "--seed", "3", "--downscale", "8"]
    )
    assert result.exit_code == 0, result.output
    return out


def test_writes_dicom_reports_previews_manifest_and_contact_sheet(dataset: Path) -> None:
    rows = list(csv.DictReader((dataset / "manifest.csv").open()))
    assert len(rows) == N
    for row in rows:
        case = sample_case(3, int(row["study_id"].split("-")[1]))
        assert row["split"] == case.split
        assert [row[name] for name in OBSERVATIONS] == [
            "" if case.labels[name] is None else str(case.labels[name]) for name in OBSERVATIONS
        ]
        assert json.loads(row["attributes"])["scenario"] == case.scenario
        assert (dataset / row["report_path"]).read_text().strip() == case.report.text
        assert pydicom.dcmread(dataset / row["dicom_path"]).PatientID == row["patient_id"]
        assert Image.open(dataset / row["preview_path"]).size == (256, 256)
    sheet = Image.open(dataset / "contact_sheet.png")
    assert sheet.width >= N * 150
    assert not list(dataset.rglob("*.part"))


def test_same_seed_reproduces_every_byte_even_with_workers(dataset: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    result = CliRunner().invoke(app, ["phantom", "--n", str(N), "--out", str(again), "--seed", "3",
                                      "--downscale", "8", "--workers", "2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert digest_tree(again) == digest_tree(dataset)


def test_bad_arguments_give_one_line_and_a_nonzero_exit(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["phantom", "--n", "0", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "n must be >= 1" in result.output
    assert "Traceback" not in result.output
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    result = CliRunner().invoke(app, ["phantom", "--n", "1", "--out", str(afile)])
    assert result.exit_code == 2
    assert "not a folder" in result.output
