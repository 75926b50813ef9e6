"""read_study: sources, selection of frontal images, transfer syntaxes and every refusal."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from pydicom import uid
from pydicom.encaps import encapsulate
from pydicom.fileset import FileSet

import dicom
from dicom.codecs import DCMTK_DECODER, decoding_plugin
from tests.dicom.factories import (
    dcmtk_compress,
    radiograph,
    save,
    write_file,
)

pytestmark = pytest.mark.unit


def test_file_bytes_and_folder_give_the_same_image(frontal_file: Path) -> None:
    from_file = dicom.read_study(frontal_file)
    from_bytes = dicom.read_study(frontal_file.read_bytes())
    from_folder = dicom.read_study(frontal_file.parent)
    for other in (from_bytes, from_folder):
        np.testing.assert_array_equal(
            other.frontal_images[0].pixels, from_file.frontal_images[0].pixels
        )
    assert from_file.study_instance_uid == radiograph().StudyInstanceUID
    assert "PixelData" not in from_file.frontal_images[0].dataset


def test_a_study_without_pixels_keeps_what_a_report_needs(frontal_file: Path) -> None:
    study = dicom.read_study(frontal_file)
    light = study.without_pixels()
    assert light.frontal_images[0].pixels.size == 0
    assert study.frontal_images[0].pixels.size > 0  # the study read is left as it was
    for field in ("sop_instance_uid", "series_instance_uid", "view_position", "dataset"):
        assert getattr(light.frontal_images[0], field) == getattr(study.frontal_images[0], field)
    assert (light.study_instance_uid, light.series) == (study.study_instance_uid, study.series)


def test_study_groups_series_and_sets_aside_lateral_and_non_images(tmp_path: Path) -> None:
    save(radiograph(view="PA"), tmp_path / "pa.dcm")
    save(radiograph(view="LL"), tmp_path / "lat.dcm")
    save(radiograph(modality="CT"), tmp_path / "ct.dcm")
    (tmp_path / "notes.txt").write_text("not an image")
    study = dicom.read_study(tmp_path)
    assert [i.view_position for i in study.frontal_images] == ["PA"]
    assert len(study.series) == 3
    reasons = {a.sop_instance_uid or a.source: a.reason for a in study.set_aside}
    assert any("(0018,5101) ViewPosition is 'LL'" in r for r in reasons.values())
    assert any("(0008,0060) Modality is 'CT'" in r for r in reasons.values())
    assert "not a DICOM file" in reasons["notes.txt"]


def test_missing_view_position_counts_as_frontal_only_without_explicit_frontal(
    tmp_path: Path,
) -> None:
    save(radiograph(view=None), tmp_path / "unknown.dcm")
    assert [i.view_position for i in dicom.read_study(tmp_path).frontal_images] == [""]
    save(radiograph(view="AP"), tmp_path / "ap.dcm")
    assert [i.view_position for i in dicom.read_study(tmp_path).frontal_images] == ["AP"]


def test_zip_tar_and_dicomdir_sources(tmp_path: Path) -> None:
    data = write_file(radiograph(), tmp_path / "one.dcm")
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("study/one.dcm", data)
    assert len(dicom.read_study(zipped.getvalue()).frontal_images) == 1
    tar_path = tmp_path / "study.tar.gz"
    with tarfile.open(tar_path, "w:gz") as archive:
        archive.add(tmp_path / "one.dcm", arcname="a/one.dcm")
    assert len(dicom.read_study(tar_path).frontal_images) == 1
    fileset = FileSet()
    fileset.add(radiograph())
    fileset.write(tmp_path / "media")
    assert len(dicom.read_study(tmp_path / "media" / "DICOMDIR").frontal_images) == 1


@pytest.mark.parametrize(
    "syntax",
    [uid.RLELossless, uid.JPEGLSLossless, uid.JPEG2000Lossless, uid.DeflatedExplicitVRLittleEndian],
)
def test_pydicom_encoded_syntaxes_decode_losslessly(syntax: str, tmp_path: Path) -> None:
    reference = dicom.read_study(save(radiograph(), tmp_path / "raw.dcm")).frontal_images[0]
    encoded = save(radiograph(), tmp_path / "enc.dcm", syntax)
    image = dicom.read_study(encoded).frontal_images[0]
    np.testing.assert_array_equal(image.pixels, reference.pixels)


@pytest.mark.parametrize(("option", "lossless"), [("+el", True), ("+e1", True), ("+eb", False)])
def test_dcmtk_jpeg_files_decode_with_gdcm(option: str, lossless: bool, tmp_path: Path) -> None:
    bits = 12 if lossless else 8
    raw = save(radiograph(bits_stored=bits), tmp_path / "raw.dcm")
    jpeg = dcmtk_compress(raw, tmp_path / "jpeg.dcm", option)
    reference = dicom.read_study(raw).frontal_images[0].pixels
    pixels = dicom.read_study(jpeg).frontal_images[0].pixels
    assert np.abs(pixels - reference).max() <= (0 if lossless else 0.05)


def test_jpeg_and_jpeg_ls_use_permissively_licensed_plugins() -> None:
    assert decoding_plugin(uid.JPEGLossless) == "gdcm"
    assert decoding_plugin(uid.JPEGBaseline8Bit) == "gdcm"
    assert decoding_plugin(uid.JPEGLSLossless) == "pyjpegls"
    assert decoding_plugin(uid.JPEG2000) == "pylibjpeg"


def test_twelve_bit_jpeg_extended_decodes_through_dcmtk(tmp_path: Path) -> None:
    raw = save(radiograph(bits_stored=12), tmp_path / "raw.dcm")
    jpeg = dcmtk_compress(raw, tmp_path / "ext.dcm", "+ee")
    assert decoding_plugin(uid.JPEGExtended12Bit, bits_stored=12) == DCMTK_DECODER
    reference = dicom.read_study(raw).frontal_images[0].pixels
    lossy = dicom.read_study(jpeg).frontal_images[0].pixels
    assert np.abs(lossy - reference).mean() < 0.01  # lossy, but the same picture


def test_unknown_transfer_syntax_is_named(tmp_path: Path) -> None:
    ds = radiograph()
    ds.file_meta.TransferSyntaxUID = uid.UID(
        "1.2.840.10008.1.2.4.100"
    )  # MPEG2: valid, not for X-rays
    ds.PixelData = encapsulate([ds.PixelData])
    ds.save_as(tmp_path / "mpeg.dcm", enforce_file_format=True, implicit_vr=False)
    with pytest.raises(
        dicom.UnsupportedTransferSyntaxError, match=r"1\.2\.840\.10008\.1\.2\.4\.100"
    ):
        dicom.read_study(tmp_path / "mpeg.dcm")


def test_file_without_preamble_is_read(tmp_path: Path) -> None:
    ds = radiograph()
    del ds.file_meta
    ds.save_as(tmp_path / "nometa.dcm", implicit_vr=True, little_endian=True)
    raw = (tmp_path / "nometa.dcm").read_bytes()
    assert raw[128:132] != b"DICM"
    assert dicom.read_study(raw).frontal_images[0].pixels.shape == (96, 128)
