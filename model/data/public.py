"""Loaders for the public chest X-ray report data sets users may hold locally.

Each loader reads a data set's own layout and yields :class:`PublicStudy` records; then
:func:`build_cache` renders them into the same uint8 cache the phantom data uses, so training
code has one input path. Layouts (as published by the data set owners):

- MIMIC-CXR-JPG: ``mimic-cxr-2.0.0-split.csv`` (dicom_id, study_id, subject_id, split),
  ``mimic-cxr-2.0.0-chexpert.csv`` (subject_id, study_id, the 14 observations as 1/0/-1/blank),
  images ``files/p<first 2 digits>/p<subject>/s<study>/<dicom_id>.jpg`` and reports
  ``files/p../p<subject>/s<study>.txt`` (free text with FINDINGS:/IMPRESSION: headings).
- IU X-ray in the R2Gen layout: ``annotation.json`` = {"train"|"val"|"test": [{"id", "report",
  "image_path": [relative paths], "split"}]} with images under ``images/``. No labels.
- CheXpert Plus: ``df_chexpert_plus_240401.csv`` (path_to_image, section_findings,
  section_impression, split), labels optional in the same columns as CheXpert.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clinical_eval.observations import OBSERVATIONS
from dicom.transforms import to_model_input
from model.data.datasets import DatasetError, StudyRecord, write_cache
from model.data.qa import questions_for

SPLIT_NAMES = {"train": "train", "validate": "val", "valid": "val", "val": "val", "test": "test"}
HEADING = re.compile(r"^\s*(FINDINGS|IMPRESSION)\s*:", re.I | re.M)


@dataclass(frozen=True)
class PublicStudy:
    """One frontal image with its report sections, optional labels and split."""

    study_id: str
    image_path: Path
    findings: str
    impression: str
    labels: dict[str, int | None]
    split: str


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise DatasetError(f"expected {path.name} in {path.parent}")
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def parse_label(value: str | None) -> int | None:
    """CheXpert CSV cells: "1.0", "0.0", "-1.0" or empty (not mentioned)."""
    if value is None or value.strip() == "":
        return None
    number = float(value)
    return None if math.isnan(number) else int(number)


def labels_from_row(row: dict[str, str]) -> dict[str, int | None]:
    return {name: parse_label(row.get(name)) for name in OBSERVATIONS}


def split_sections(text: str) -> tuple[str, str]:
    """FINDINGS and IMPRESSION of a free-text report; missing sections are empty."""
    sections: dict[str, str] = {}
    matches = list(HEADING.finditer(text))
    ends = [m.start() for m in matches[1:]] + [len(text)] if matches else []
    for match, end in zip(matches, ends, strict=True):
        sections[match[1].upper()] = " ".join(text[match.end() : end].split())
    return sections.get("FINDINGS", ""), sections.get("IMPRESSION", "")


def load_mimic_cxr(root: Path) -> Iterator[PublicStudy]:
    """MIMIC-CXR-JPG studies that have an image, a report and a known split."""
    root = Path(root)
    labels = {
        row["study_id"]: labels_from_row(row)
        for row in read_csv(root / "mimic-cxr-2.0.0-chexpert.csv")
    }
    seen: set[str] = set()
    for row in read_csv(root / "mimic-cxr-2.0.0-split.csv"):
        subject, study = row["subject_id"], row["study_id"]
        if study in seen:  # one image per study: the first listed view
            continue
        folder = root / "files" / f"p{subject[:2]}" / f"p{subject}"
        report, image = folder / f"s{study}.txt", folder / f"s{study}" / f"{row['dicom_id']}.jpg"
        if not (report.is_file() and image.is_file()):
            continue
        seen.add(study)
        findings, impression = split_sections(report.read_text())
        yield PublicStudy(
            study,
            image,
            findings,
            impression,
            labels.get(study, dict.fromkeys(OBSERVATIONS)),
            SPLIT_NAMES[row["split"]],
        )


def load_iu_xray(root: Path) -> Iterator[PublicStudy]:
    """IU X-ray in R2Gen's ``annotation.json`` layout; the report is all findings text."""
    path = Path(root) / "annotation.json"
    if not path.is_file():
        raise DatasetError(f"expected annotation.json (R2Gen layout) in {root}")
    try:
        annotation = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path} is not valid JSON: {err}") from err
    for split, entries in annotation.items():
        for entry in entries:
            image = Path(root) / "images" / entry["image_path"][0]
            yield PublicStudy(
                str(entry["id"]),
                image,
                entry["report"].strip(),
                "",
                dict.fromkeys(OBSERVATIONS),
                SPLIT_NAMES[split],
            )


def load_chexpert_plus(
    root: Path, csv_name: str = "df_chexpert_plus_240401.csv"
) -> Iterator[PublicStudy]:
    """CheXpert Plus rows with at least one report section."""
    for row in read_csv(Path(root) / csv_name):
        findings, impression = (
            row.get("section_findings", "").strip(),
            row.get("section_impression", "").strip(),
        )
        if findings or impression:
            yield PublicStudy(
                row["path_to_image"],
                Path(root) / row["path_to_image"],
                findings,
                impression,
                labels_from_row(row),
                SPLIT_NAMES[row.get("split", "train")],
            )


def read_image(path: Path) -> np.ndarray:
    """A JPEG/PNG as float32 grayscale in [0, 1]."""
    from PIL import Image

    with Image.open(path) as image:
        array = np.asarray(image.convert("L"), dtype=np.float32)
    return array / 255.0


def build_cache(
    studies: Iterator[PublicStudy], directory: Path, split: str, image_size: int
) -> Path:
    """Render one split of a public data set into a training cache (see ``datasets.py``), each
    image made into the model input as serving makes it (:func:`dicom.to_model_input`)."""

    def pairs() -> Iterator[tuple[np.ndarray, StudyRecord]]:
        for study in studies:
            if study.split == split:
                image = to_model_input(read_image(study.image_path), image_size)
                labelled = any(value is not None for value in study.labels.values())
                qa = questions_for(study.labels, []) if labelled else []  # no labels, no questions
                yield (
                    image,
                    StudyRecord(study.study_id, study.findings, study.impression, study.labels, qa),
                )

    return write_cache(directory, pairs())
