"""Bad and hostile input: typed DicomErrors that name the tag and leak nothing identifying."""

from __future__ import annotations

import io
import logging
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest

import dicom
from tests.dicom.factories import PATIENT_ID, PATIENT_NAME, STUDY_UID, radiograph, save, write_file

pytestmark = pytest.mark.unit


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("dataset_changes", "error", "names"),
    [
        ({"NumberOfFrames": 2}, dicom.MultiFrameError, "(0028,0008) NumberOfFrames"),
        ({"BodyPartExamined": "KNEE"}, dicom.NotChestRadiographError, "(0018,0015)"),
        ({"Modality": "CT"}, dicom.NotChestRadiographError, "(0008,0060) Modality"),
        ({"Rows": 20000}, dicom.ImageLimitError, "(0028,0010) Rows"),
        ({"BitsStored": 24}, dicom.ImageLimitError, "(0028,0101) BitsStored"),
        ({"SOPInstanceUID": "1.2.abc"}, dicom.InconsistentUidError, "(0008,0018)"),
        ({"PhotometricInterpretation": "RGB"}, dicom.NotChestRadiographError, "(0028,0004)"),
    ],
)
def test_bad_headers_are_refused_naming_the_tag(
    dataset_changes: dict[str, object], error: type[Exception], names: str, tmp_path: Path
) -> None:
    ds = radiograph()
    for keyword, value in dataset_changes.items():
        setattr(ds, keyword, value)
    with pytest.raises(error) as caught:
        dicom.read_study(save(ds, tmp_path / "bad.dcm"))
    assert names in str(caught.value)
    assert isinstance(caught.value, dicom.DicomError | ValueError)


def test_limits_are_configurable(frontal_file: Path) -> None:
    with pytest.raises(dicom.ImageLimitError, match="raise ReadLimits"):
        dicom.read_study(frontal_file, limits=dicom.ReadLimits(max_columns=100))


def test_not_dicom_and_missing_pixel_data(tmp_path: Path) -> None:
    with pytest.raises(dicom.NotDicomError, match="not DICOM"):
        dicom.read_study(b"%PDF-1.4 this is not an image at all" * 10)
    ds = radiograph()
    del ds.PixelData
    with pytest.raises(dicom.MissingPixelDataError, match=r"\(7FE0,0010\) PixelData"):
        dicom.read_study(save(ds, tmp_path / "nopix.dcm"))


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_files_are_refused(keep: float, tmp_path: Path) -> None:
    data = write_file(radiograph(), tmp_path / "full.dcm")
    with pytest.raises(dicom.DicomError) as caught:
        dicom.read_study(data[: int(len(data) * keep)])
    assert isinstance(caught.value, dicom.TruncatedError | dicom.NotDicomError)


@pytest.mark.parametrize("syntax", ["JPEG2000Lossless", "RLELossless"])
@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_cut_compressed_pixel_data_is_refused_as_truncated(
    syntax: str, keep: float, tmp_path: Path
) -> None:
    """pydicom only warns when encapsulated pixel data ends early; the reader must refuse."""
    import pydicom.uid

    data = save(radiograph(), tmp_path / "c.dcm", getattr(pydicom.uid, syntax)).read_bytes()
    with pytest.raises(dicom.TruncatedError, match="truncated"):
        dicom.read_study(data[: int(len(data) * keep)])


def test_huge_declared_length_is_refused(tmp_path: Path) -> None:
    data = write_file(radiograph(), tmp_path / "ok.dcm")
    marker = b"\x10\x00\x10\x00PN"  # (0010,0010) PatientName, explicit VR, 2-byte length
    at = data.index(marker)
    hostile = (
        data[:at] + b"\x10\x00\x10\x00UN\x00\x00" + struct.pack("<I", 0xFFFFFFF0) + data[at + 8 :]
    )
    with pytest.raises(dicom.DicomError):
        dicom.read_study(hostile)


def test_two_studies_are_inconsistent(tmp_path: Path) -> None:
    save(radiograph(), tmp_path / "a.dcm")
    save(radiograph(study_uid="1.2.826.0.1.3680043.8.498.200"), tmp_path / "b.dcm")
    with pytest.raises(dicom.InconsistentUidError, match=r"\(0020,000D\) StudyInstanceUIDs"):
        dicom.read_study(tmp_path)


@pytest.mark.parametrize("name", ["../escape.dcm", "/etc/escape.dcm", "a/../../escape.dcm"])
def test_zip_slip_is_refused(name: str, tmp_path: Path) -> None:
    archive = _zip({name: write_file(radiograph(), tmp_path / "x.dcm")})
    with pytest.raises(dicom.ArchiveError, match="escapes its folder"):
        dicom.read_study(archive)


def test_archive_limits_refuse_count_depth_and_size(tmp_path: Path) -> None:
    data = write_file(radiograph(), tmp_path / "x.dcm")
    many = _zip({f"{i}.dcm": data for i in range(5)})
    with pytest.raises(dicom.ArchiveError, match="5 files"):
        dicom.read_study(many, limits=dicom.ReadLimits(max_files=4))
    deep = _zip({"a/b/c/d/x.dcm": data})
    with pytest.raises(dicom.ArchiveError, match="4 deep"):
        dicom.read_study(deep, limits=dicom.ReadLimits(max_depth=3))
    bomb = _zip({"zeros.bin": bytes(50_000_000)})
    assert len(bomb) < 100_000
    with pytest.raises(dicom.ArchiveError, match="more than the limit"):
        dicom.read_study(bomb, limits=dicom.ReadLimits(max_total_bytes=10_000_000))


def test_tar_links_are_refused() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        link = tarfile.TarInfo("passwd.dcm")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    with pytest.raises(dicom.ArchiveError, match="links"):
        dicom.read_study(buffer.getvalue())


def test_fuzzed_headers_never_escape_as_other_exceptions(tmp_path: Path) -> None:
    data = bytearray(write_file(radiograph(rows=64, columns=64), tmp_path / "f.dcm"))
    header_end = data.index(b"\xe0\x7f\x10\x00")
    rng = np.random.default_rng(22068)
    outcomes = {"read": 0, "refused": 0}
    for _ in range(300):
        fuzzed = bytearray(data)
        for at in rng.integers(132, header_end, size=4):
            fuzzed[at] = int(rng.integers(0, 256))
        try:
            dicom.read_study(bytes(fuzzed))
            outcomes["read"] += 1
        except dicom.DicomError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0 and sum(outcomes.values()) == 300


def test_nothing_identifying_in_errors_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hostile = [
        radiograph(BodyPartExamined="KNEE"),
        radiograph(NumberOfFrames=3),
        radiograph(WindowCenter=10, WindowWidth=-5),
        radiograph(study_uid=STUDY_UID, SOPInstanceUID="bad uid"),
    ]
    messages = []
    for index, ds in enumerate(hostile):
        with pytest.raises(dicom.DicomError) as caught:
            dicom.read_study(save(ds, tmp_path / f"{index}.dcm"))
        messages.append(str(caught.value))
    data = write_file(radiograph(), tmp_path / "cut.dcm")
    for cut in (len(data) // 2, len(data) - 10):
        with pytest.raises(dicom.DicomError) as caught:
            dicom.read_study(data[:cut])
        messages.append(str(caught.value))
    text = "\n".join(messages) + caplog.text
    for secret in (PATIENT_NAME, "Testpatient", PATIENT_ID, "19610214", "ACC-99812"):
        assert secret not in text


def test_dicomdir_entries_escaping_their_folder_are_refused(tmp_path: Path) -> None:
    from pydicom.fileset import FileSet

    fileset = FileSet()
    fileset.add(radiograph())
    fileset.write(tmp_path / "media")
    dicomdir_path = tmp_path / "media" / "DICOMDIR"
    dicomdir = pydicom.dcmread(dicomdir_path)
    for record in dicomdir.DirectoryRecordSequence:
        if "ReferencedFileID" in record:
            record.ReferencedFileID = ["..", "..", "etc", "passwd"]
    dicomdir.save_as(dicomdir_path)
    with pytest.raises(dicom.ArchiveError, match=r"\(0004,1500\) ReferencedFileID"):
        dicom.read_study(dicomdir_path)
