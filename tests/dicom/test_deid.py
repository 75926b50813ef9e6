"""De-identification, the encrypted re-identification map and the burned-in text check."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from cryptography.fernet import Fernet
from PIL import Image, ImageDraw
from pydicom import Dataset

import dicom
from dicom.burned_in import detect_burned_in, mask_burned_in
from dicom.deid import (
    DeidOptions,
    ReidStore,
    deidentify,
    reidentify_for_sr,
)
from dicom.draft import DraftReport
from dicom.sr import write_sr
from tests.dicom.factories import PATIENT_ID, PATIENT_NAME, STUDY_UID, radiograph, save

pytestmark = pytest.mark.unit
SALT = b"0123456789abcdef-test-salt"


def _identifying(ds: Dataset) -> Dataset:
    ds.add_new(0x00091010, "LO", "private vendor note " + PATIENT_NAME)
    ds.PerformingPhysicianName = "Performer^Secret"
    ds.OperatorsName = "Operator^Secret"
    ds.OtherPatientIDs = "OTHER-ID-1"
    return ds


def _text(ds: Dataset) -> str:
    return str(ds) + str(getattr(ds, "file_meta", ""))


def test_basic_profile_removes_identity_and_keeps_the_options() -> None:
    source = _identifying(radiograph())
    clean, entry = deidentify(source, options=DeidOptions(), uid_salt=SALT)
    text = _text(clean)
    for secret in (
        PATIENT_NAME,
        PATIENT_ID,
        "19610214",
        "ACC-99812",
        "Secret",
        "OTHER-ID-1",
        "Saint Example",
        STUDY_UID,
        str(source.SOPInstanceUID),
    ):
        assert secret not in text
    assert clean.PatientIdentityRemoved == "YES"
    assert (clean.PatientSex, clean.PatientAge, clean.StudyDate) == ("F", "064Y", "20250301")
    assert "PatientName" in clean and clean.PatientName == ""  # type 2 stays, emptied
    assert clean.ViewPosition == "PA" and clean.PixelData == source.PixelData
    assert entry.uid_map[str(clean.StudyInstanceUID)] == STUDY_UID
    assert str(source.PatientName) == PATIENT_NAME  # the input is not modified


def test_without_options_dates_and_characteristics_go() -> None:
    options = DeidOptions(retain_dates=False, retain_patient_characteristics=False)
    clean, _ = deidentify(radiograph(), options=options, uid_salt=SALT)
    assert clean.StudyDate == "" and "PatientAge" not in clean and clean.PatientSex == ""
    assert clean.LongitudinalTemporalInformationModified == "REMOVED"
    meanings = {item.CodeValue for item in clean.DeidentificationMethodCodeSequence}
    assert meanings == {"113100"}


def test_uids_are_consistent_within_a_study_and_differ_by_salt() -> None:
    series = "1.2.826.0.1.3680043.8.498.77"
    first, _ = deidentify(radiograph(series_uid=series), uid_salt=SALT)
    second, _ = deidentify(radiograph(series_uid=series), uid_salt=SALT)
    other_salt, _ = deidentify(radiograph(series_uid=series), uid_salt=b"another-salt-of-16b")
    assert first.StudyInstanceUID == second.StudyInstanceUID
    assert first.SeriesInstanceUID == second.SeriesInstanceUID
    assert first.SOPInstanceUID != second.SOPInstanceUID
    assert first.file_meta.MediaStorageSOPInstanceUID == first.SOPInstanceUID
    assert other_salt.StudyInstanceUID != first.StudyInstanceUID
    assert first.SOPClassUID == radiograph().SOPClassUID  # well-known UIDs are kept


def test_short_salt_is_refused() -> None:
    with pytest.raises(dicom.ReidentificationError, match="uid_salt"):
        deidentify(radiograph(), uid_salt=b"short")


def test_draft_on_deidentified_study_returns_to_the_original(
    draft: DraftReport, tmp_path: Path
) -> None:
    source = radiograph()
    clean, entry = deidentify(source, uid_salt=SALT)
    study = dicom.read_study(save(clean, tmp_path / "clean.dcm"))
    sr = write_sr(draft, study)
    assert PATIENT_NAME not in _text(sr)
    store = ReidStore(tmp_path / "reid", key=Fernet.generate_key())
    store.save(entry)
    assert PATIENT_NAME.encode() not in next((tmp_path / "reid").iterdir()).read_bytes()
    back = reidentify_for_sr(sr, store.load(entry.pseudonymous_study_uid))
    assert str(back.PatientName) == PATIENT_NAME and back.PatientID == PATIENT_ID
    assert back.StudyInstanceUID == STUDY_UID
    cited = back.CurrentRequestedProcedureEvidenceSequence[0]
    assert cited.StudyInstanceUID == STUDY_UID
    referenced = cited.ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert referenced.ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert back.SOPInstanceUID != sr.SOPInstanceUID
    assert back.SOPInstanceUID == reidentify_for_sr(sr, entry).SOPInstanceUID


def test_reid_store_refuses_wrong_key_and_unknown_study(tmp_path: Path) -> None:
    _, entry = deidentify(radiograph(), uid_salt=SALT)
    ReidStore(tmp_path, key=Fernet.generate_key()).save(entry)
    with pytest.raises(dicom.ReidentificationError, match="another key"):
        ReidStore(tmp_path, key=Fernet.generate_key()).load(entry.pseudonymous_study_uid)
    with pytest.raises(dicom.ReidentificationError, match="no re-identification map"):
        ReidStore(tmp_path).load("1.2.3")


def _chest_like(rows: int = 512, columns: int = 512) -> np.ndarray:
    """A smooth, unsaturated body-like image (no text)."""
    yy, xx = np.mgrid[0:rows, 0:columns] / rows
    return (0.2 + 0.5 * np.exp(-((yy - 0.5) ** 2 + (xx - 0.5) ** 2) * 6)).astype(np.float32)


def test_burned_in_text_is_found_near_the_edge_and_masked() -> None:
    pixels = _chest_like()
    canvas = Image.fromarray((pixels * 255).astype(np.uint8))
    ImageDraw.Draw(canvas).text((12, 10), "SMITH JOHN 1961", fill=255, font_size=22)
    with_text = np.asarray(canvas, dtype=np.float32) / 255
    finding = detect_burned_in(radiograph(), with_text)
    assert finding.flagged and not finding.tag_says
    (row0, col0, _, col1) = finding.regions[0]
    assert row0 < 40 and col0 < 30 and col1 > 100
    masked = mask_burned_in(with_text, finding)
    assert masked[10:35, 12:150].max() < 0.98
    assert not detect_burned_in(radiograph(), _chest_like()).flagged


def test_burned_in_tag_alone_flags() -> None:
    finding = detect_burned_in(radiograph(BurnedInAnnotation="YES"), _chest_like())
    assert finding.flagged and finding.tag_says and finding.regions == []


def test_no_environment_key_leaks_into_store_files(tmp_path: Path) -> None:
    _, entry = deidentify(radiograph(), uid_salt=os.urandom(16))
    path = ReidStore(tmp_path).save(entry)
    assert path.name.endswith(".reid") and not list(tmp_path.glob(".*"))


def test_reid_maps_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    """The map links pseudonyms to patients; reports beside it are shared, the map is not."""
    _, entry = deidentify(radiograph(), uid_salt=os.urandom(16))
    path = ReidStore(tmp_path).save(entry)
    assert path.stat().st_mode & 0o777 == 0o600
