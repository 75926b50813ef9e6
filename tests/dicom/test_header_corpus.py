"""Every study read_study accepts gets four valid report files, whatever its header lacks.

The corpus (``header_variants``) drops each Patient/Study attribute in turn, drops the File Meta,
and covers secondary captures, CR and DX, both photometric interpretations, 8 to 16 bits, five
character sets and legacy or invalid values. Each SR and PDF must pass ``dciodvfy`` without
errors and each FHIR resource must validate.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import pydicom
import pytest
from fhir.resources.R4B.diagnosticreport import DiagnosticReport

import dicom
from dicom.bundle import write_report_bundle
from dicom.draft import DraftReport
from tests.dicom.factories import (
    NAMES_BY_CHARACTER_SET,
    PATIENT_AND_STUDY_TYPE_2,
    SIGNATURE,
    acr_nema,
    dciodvfy_errors,
    header_variants,
    radiograph,
    save,
    without,
)

pytestmark = pytest.mark.integration

VARIANTS = header_variants()


def _bundle(ds: pydicom.Dataset, draft: DraftReport, folder: Path) -> dict[str, Path]:
    study = dicom.read_study(save(ds, folder / "source.dcm"))
    return write_report_bundle(draft, study, folder / "report")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_accepted_header_gets_four_valid_report_files(
    variant: str, draft: DraftReport, trusted_draft: DraftReport, tmp_path: Path, dciodvfy: str
) -> None:
    """The draft (with its trust signals) and its signed version (without), both."""
    study = dicom.read_study(save(VARIANTS[variant], tmp_path / "source.dcm"))
    for signature in (None, SIGNATURE):
        text = trusted_draft if signature is None else draft
        files = write_report_bundle(text, study, tmp_path / str(signature), signature=signature)
        assert sorted(files) == ["fhir", "json", "pdf", "sr"]
        for kind in ("sr", "pdf"):
            assert dciodvfy_errors(dciodvfy, files[kind]) == [], (kind, signature)
            written = pydicom.dcmread(files[kind])
            assert all(keyword in written for keyword in PATIENT_AND_STUDY_TYPE_2), kind
        DiagnosticReport.model_validate(json.loads(files["fhir"].read_text()))


@pytest.mark.parametrize("keyword", PATIENT_AND_STUDY_TYPE_2)
def test_a_missing_type_2_attribute_is_written_empty(
    keyword: str, draft: DraftReport, tmp_path: Path
) -> None:
    files = _bundle(VARIANTS[f"no {keyword}"], draft, tmp_path)
    for kind in ("sr", "pdf"):
        assert pydicom.dcmread(files[kind])[keyword].is_empty, kind


def test_legacy_values_are_rewritten_or_left_empty(draft: DraftReport, tmp_path: Path) -> None:
    def written(variant: str) -> pydicom.Dataset:
        return pydicom.dcmread(_bundle(VARIANTS[variant], draft, tmp_path / variant)["sr"])

    acr_nema_dates = written("ACR-NEMA dates and times")
    assert (acr_nema_dates.PatientBirthDate, acr_nema_dates.StudyDate) == ("19610214", "20250301")
    assert acr_nema_dates.StudyTime == "101500"
    assert written("PatientSex lower case").PatientSex == "F"
    assert written("PatientSex U").PatientSex == ""  # not M, F or O: unknown, as empty says
    assert "PatientAge" not in written("PatientAge without unit")  # Type 3: left out
    assert written("AccessionNumber over 16 characters").AccessionNumber == ""
    assert written("StudyTime with fraction").StudyTime == "101500.123456"


@pytest.mark.parametrize("label", list(NAMES_BY_CHARACTER_SET))
def test_names_keep_their_characters_in_utf_8(
    label: str, draft: DraftReport, tmp_path: Path
) -> None:
    _, name = NAMES_BY_CHARACTER_SET[label]
    files = _bundle(VARIANTS[f"{label} name"], draft, tmp_path)
    for kind in ("sr", "pdf"):
        written = pydicom.dcmread(files[kind])
        assert written.SpecificCharacterSet == "ISO_IR 192"
        assert str(written.PatientName) == name


def test_an_undeclared_latin_1_name_is_read_as_latin_1(draft: DraftReport, tmp_path: Path) -> None:
    sr = pydicom.dcmread(_bundle(VARIANTS["undeclared Latin-1 name"], draft, tmp_path)["sr"])
    assert str(sr.PatientName) == "Müller^Jürgen"


def test_a_missing_sop_class_is_taken_from_the_file_meta(
    draft: DraftReport, tmp_path: Path
) -> None:
    source = VARIANTS["no SOPClassUID, file meta names it"]
    sr = pydicom.dcmread(_bundle(source, draft, tmp_path)["sr"])
    cited = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    sop_class = cited.ReferencedSOPSequence[0].ReferencedSOPClassUID
    assert sop_class == source.file_meta.MediaStorageSOPClassUID


@pytest.mark.parametrize("decode_pixels", [True, False])
def test_an_image_of_unknown_sop_class_is_refused_at_read_time(
    decode_pixels: bool, tmp_path: Path
) -> None:
    path = save(acr_nema(without(radiograph(), "SOPClassUID")), tmp_path / "old.dcm")
    with pytest.raises(dicom.InvalidHeaderError, match=r"\(0008,0016\) SOPClassUID .* dcmodify"):
        dicom.read_study(path, decode_pixels=decode_pixels)


def test_no_patient_name_reaches_warnings_or_logs(
    draft: DraftReport, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """highdicom warns with the whole of a one-component name such as 'JOHN DOE'."""
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _bundle(VARIANTS["one-component name"], draft, tmp_path)
    said = caplog.text + "\n".join(str(warning.message) for warning in caught)
    assert "JOHN DOE" not in said
