"""The public-format loaders, on tiny fixtures written in each data set's own layout."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.data.datasets import DatasetError, read_cache
from model.data.public import (
    build_cache,
    load_chexpert_plus,
    load_iu_xray,
    load_mimic_cxr,
    split_sections,
)

pytestmark = pytest.mark.unit


def write_image(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((40, 50), value, np.uint8)).save(path)


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_split_sections_handles_order_case_and_absence() -> None:
    text = "EXAMINATION: chest\n impression: No acute process.\nFINDINGS:  Clear\n lungs."
    assert split_sections(text) == ("Clear lungs.", "No acute process.")
    assert split_sections("nothing here") == ("", "")


def test_mimic_cxr_jpg_layout(tmp_path: Path) -> None:
    folder = tmp_path / "files" / "p10" / "p10000032"
    write_image(folder / "s501" / "d1.jpg", 200)
    (folder / "s501.txt").write_text("FINDINGS: Small left effusion.\nIMPRESSION: Left effusion.")
    write_csv(
        tmp_path / "mimic-cxr-2.0.0-split.csv",
        [
            {"dicom_id": "d1", "study_id": "501", "subject_id": "10000032", "split": "validate"},
            {"dicom_id": "d2", "study_id": "501", "subject_id": "10000032", "split": "validate"},
            {"dicom_id": "d9", "study_id": "777", "subject_id": "10000032", "split": "train"},
        ],
    )
    write_csv(
        tmp_path / "mimic-cxr-2.0.0-chexpert.csv",
        [
            {
                "subject_id": "10000032",
                "study_id": "501",
                "Pleural Effusion": "1.0",
                "Edema": "-1.0",
                "Cardiomegaly": "",
            }
        ],
    )
    studies = list(load_mimic_cxr(tmp_path))
    assert len(studies) == 1  # the second view and the study without files are skipped
    study = studies[0]
    assert (study.findings, study.impression, study.split) == (
        "Small left effusion.",
        "Left effusion.",
        "val",
    )
    assert (
        study.labels["Pleural Effusion"] == 1
        and study.labels["Edema"] == -1
        and study.labels["Cardiomegaly"] is None
    )
    images, records = read_cache(
        build_cache(load_mimic_cxr(tmp_path), tmp_path / "cache", "val", 32)
    )
    assert images.shape == (1, 32, 32) and abs(int(images[0, 5, 5]) - 200) <= 1
    assert any(
        q.question == "Is there pleural effusion?" and q.answer == "Yes." for q in records[0].qa
    )


def test_iu_xray_r2gen_layout(tmp_path: Path) -> None:
    write_image(tmp_path / "images" / "CXR1_IM-1" / "0.png", 10)
    annotation = {
        "train": [
            {
                "id": "CXR1_IM-1",
                "report": "The heart is normal. ",
                "image_path": ["CXR1_IM-1/0.png", "CXR1_IM-1/1.png"],
                "split": "train",
            }
        ],
        "val": [],
        "test": [],
    }
    (tmp_path / "annotation.json").write_text(json.dumps(annotation))
    (study,) = load_iu_xray(tmp_path)
    assert study.findings == "The heart is normal." and study.split == "train"
    assert study.image_path.name == "0.png"
    _, records = read_cache(build_cache(load_iu_xray(tmp_path), tmp_path / "cache", "train", 32))
    assert records[0].qa == []  # no labels: no presence questions invented


def test_chexpert_plus_csv(tmp_path: Path) -> None:
    write_image(tmp_path / "train" / "patient1" / "view1.png", 90)
    write_csv(
        tmp_path / "df_chexpert_plus_240401.csv",
        [
            {
                "path_to_image": "train/patient1/view1.png",
                "section_findings": "Clear lungs.",
                "section_impression": "Normal.",
                "split": "valid",
                "No Finding": "1.0",
            },
            {
                "path_to_image": "train/patient2/view1.png",
                "section_findings": "",
                "section_impression": "",
                "split": "train",
                "No Finding": "",
            },
        ],
    )
    (study,) = load_chexpert_plus(tmp_path)
    assert (study.findings, study.impression, study.split) == ("Clear lungs.", "Normal.", "val")
    assert study.labels["No Finding"] == 1


def test_missing_layout_files_name_what_is_expected(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"mimic-cxr-2\.0\.0-chexpert\.csv"):
        list(load_mimic_cxr(tmp_path))
    with pytest.raises(DatasetError, match=r"annotation\.json"):
        list(load_iu_xray(tmp_path))
    (tmp_path / "annotation.json").write_text("{oops")
    with pytest.raises(DatasetError, match="not valid JSON"):
        list(load_iu_xray(tmp_path))
