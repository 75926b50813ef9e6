"""read_study(decode_pixels=False): the same study and the same refusals, without the decode."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom import Dataset, uid
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence

import dicom
from dicom.read import NO_PIXELS
from tests.dicom.factories import radiograph, save, voi_lut_item, with_voi_lut, write_file

pytestmark = pytest.mark.unit


def _short_lut(ds: Dataset, keyword: str) -> Dataset:
    """A LUT whose LUTData holds one entry where its LUTDescriptor declares 4096."""
    item = voi_lut_item(0, 4096, 16, [0])
    if keyword == "ModalityLUTSequence":
        item.ModalityLUTType = "OD"
    setattr(ds, keyword, Sequence([item]))
    return ds


def _mpeg2(ds: Dataset) -> Dataset:
    """A valid transfer syntax that no radiograph decoder handles."""
    ds.file_meta.TransferSyntaxUID = uid.UID("1.2.840.10008.1.2.4.100")
    ds.PixelData = encapsulate([ds.PixelData])
    return ds


def _short_native_pixels(ds: Dataset) -> Dataset:
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    return ds


def _no_pixel_data(ds: Dataset) -> Dataset:
    del ds.PixelData
    return ds


# Every refusal a header can cause, each a change to a valid radiograph.
REFUSED_HEADERS: dict[str, Callable[[], Dataset]] = {
    "multi-frame": lambda: radiograph(NumberOfFrames=2),
    "knee": lambda: radiograph(BodyPartExamined="KNEE"),
    "CT": lambda: radiograph(modality="CT"),
    "lateral only": lambda: radiograph(view="LL"),
    "too many rows": lambda: radiograph(Rows=20000),
    "24 bits stored": lambda: radiograph(BitsStored=24),
    "RGB": lambda: radiograph(PhotometricInterpretation="RGB"),
    "bad SOP UID": lambda: radiograph(SOPInstanceUID="1.2.abc"),
    "no pixel data": lambda: _no_pixel_data(radiograph()),
    "negative window": lambda: radiograph(WindowCenter=10, WindowWidth=-5),
    "unknown VOI function": lambda: radiograph(
        WindowCenter=100, WindowWidth=200, VOILUTFunction="CUBIC"
    ),
    "short VOI LUT": lambda: _short_lut(radiograph(), "VOILUTSequence"),
    "short modality LUT": lambda: _short_lut(radiograph(), "ModalityLUTSequence"),
    "MPEG2 syntax": lambda: _mpeg2(radiograph()),
    "short native pixels": lambda: _short_native_pixels(radiograph()),
}


def _refusal(source: Path | bytes, decode_pixels: bool) -> tuple[type, str]:
    with pytest.raises(dicom.DicomError) as caught:
        dicom.read_study(source, decode_pixels=decode_pixels)
    return type(caught.value), str(caught.value)


@pytest.mark.parametrize("case", list(REFUSED_HEADERS))
def test_every_header_refusal_is_the_same_without_decoding(case: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.dcm"
    REFUSED_HEADERS[case]().save_as(path, enforce_file_format=True, implicit_vr=False)
    assert _refusal(path, decode_pixels=False) == _refusal(path, decode_pixels=True)


@pytest.mark.parametrize("keep", [0.3, 0.95])
def test_truncated_files_are_refused_alike(keep: float, tmp_path: Path) -> None:
    data = write_file(radiograph(), tmp_path / "full.dcm")
    cut = data[: int(len(data) * keep)]
    assert _refusal(cut, decode_pixels=False) == _refusal(cut, decode_pixels=True)


def test_two_studies_are_refused_alike(tmp_path: Path) -> None:
    save(radiograph(), tmp_path / "a.dcm")
    save(radiograph(study_uid="1.2.826.0.1.3680043.8.498.200"), tmp_path / "b.dcm")
    assert _refusal(tmp_path, decode_pixels=False) == _refusal(tmp_path, decode_pixels=True)


def test_header_only_read_is_the_full_read_without_pixels(tmp_path: Path) -> None:
    save(
        with_voi_lut(radiograph(view="PA"), voi_lut_item(0, 4096, 16, range(4096))),
        tmp_path / "pa.dcm",
    )
    save(radiograph(view="LL"), tmp_path / "lat.dcm")
    full = dicom.read_study(tmp_path)
    header_only = dicom.read_study(tmp_path, decode_pixels=False)
    assert header_only.frontal_images[0].pixels is NO_PIXELS
    assert header_only == full.without_pixels()
    assert dicom.summarize_study(header_only) == dicom.summarize_study(full)
    assert dicom.describe_study(header_only) == dicom.describe_study(full)


def test_only_a_corrupt_compressed_stream_waits_for_the_decode(tmp_path: Path) -> None:
    """The one fault a header cannot show: the stream's bytes, which only the decoder reads."""
    ds = radiograph()
    ds.file_meta.TransferSyntaxUID = uid.JPEG2000Lossless
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(range(256)) * 8])
    path = tmp_path / "garbled.dcm"
    ds.save_as(path, enforce_file_format=True, implicit_vr=False)
    assert dicom.read_study(path, decode_pixels=False).frontal_images[0].pixels.size == 0
    with pytest.raises(dicom.TruncatedError, match=r"\(7FE0,0010\) PixelData"):
        dicom.read_study(path)
