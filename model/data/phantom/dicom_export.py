"""Full-resolution DICOM export: CR and DX For Presentation objects with fake identities.

The files are meant to exercise the ingestion path the way a real PACS feed would: CR and DX
IODs, MONOCHROME1 and MONOCHROME2, 10 to 16 bits stored, window centre/width or a VOI LUT
sequence, pixel padding, burned-in side markers, and five transfer syntaxes. Labels never go
into the header (they live in the manifest), so no model can read them from metadata.

UIDs are derived from the seed and study index (``generate_uid`` with entropy sources), and
no clock is read, so the same seed writes byte-identical files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from model.data.phantom.cases import PhantomCase
from model.data.phantom.render import detector_image

if TYPE_CHECKING:
    from pydicom import Dataset

UID_ENTROPY = "echocxr-phantom"
CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_PRESENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
ENCODING_PLUGINS = {
    "1.2.840.10008.1.2.5": "pydicom",
    "1.2.840.10008.1.2.4.80": "pyjpegls",
    "1.2.840.10008.1.2.4.90": "pylibjpeg",
}
VOI_LUT_BITS = 16


class PhantomExportError(RuntimeError):
    """A DICOM file could not be encoded or written (names the transfer syntax or tool)."""


def study_uids(case: PhantomCase) -> dict[str, str]:
    """Study, series and SOP instance UIDs, deterministic per case."""
    from pydicom.uid import generate_uid

    key = [UID_ENTROPY, str(case.seed), str(case.index)]
    return {
        name: generate_uid(entropy_srcs=[*key, name]) for name in ("study", "series", "instance")
    }


def stored_pixels(case: PhantomCase, downscale: int = 1) -> tuple[np.ndarray, int]:
    """Stored pixel values (uint16) and the pixel padding value for the case's matrix.

    Exposed field pixels span [1, 2**bits - 1] (MONOCHROME2) or [0, 2**bits - 2]
    (MONOCHROME1, inverted); the padding value sits at the far end so it never collides
    with an exposed pixel.
    """
    acq = case.acquisition
    image, exposed = detector_image(case, downscale)
    top = 2**acq.bits_stored - 1
    levels = np.rint(image.astype(np.float64) * (top - 1)).astype(np.uint16)
    if acq.photometric == "MONOCHROME2":
        pixels, padding = levels + 1, 0
    else:
        pixels, padding = (top - 1) - levels, top
    pixels[~exposed] = padding
    return pixels, padding


def to_dicom(case: PhantomCase, downscale: int = 1) -> Dataset:
    """The study as an uncompressed pydicom Dataset (CR or DX For Presentation).

    ``downscale`` shrinks the matrix (and scales PixelSpacing) for quick tests; the default
    is the case's full 1k-3k matrix. Compression happens in ``write_dicom``.
    """
    from pydicom import Dataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID

    acq = case.acquisition
    pixels, padding = stored_pixels(case, downscale)
    uids = study_uids(case)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(_sop_class(case))
    ds.file_meta.MediaStorageSOPInstanceUID = UID(uids["instance"])
    ds.file_meta.TransferSyntaxUID = UID(EXPLICIT_LE)
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta.ImplementationVersionName = "ECHOCXR_PHANTOM"
    _patient_and_study(ds, case, uids)
    _series_and_equipment(ds, case, uids)
    _image(ds, case, pixels, padding, downscale)
    _voi(ds, case, pixels, padding)
    if acq.modality == "DX":
        _dx_modules(ds, case, downscale)
    return ds


def write_dicom(case: PhantomCase, path: Path, downscale: int = 1) -> Path:
    """Encode in the case's transfer syntax and write atomically (temp file, then rename).

    Raises
    ------
    PhantomExportError
        If the encoder for the transfer syntax is unavailable or fails.
    """
    ds = to_dicom(case, downscale)
    syntax = case.acquisition.transfer_syntax
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, suffix=".part")
    os.close(handle)
    temp = Path(temp_name)
    try:
        if syntax == JPEG_LOSSLESS_SV1:
            _write_jpeg_lossless(ds, temp)
        else:
            if syntax in ENCODING_PLUGINS:
                _compress(ds, syntax)
            ds.save_as(temp, enforce_file_format=True)
        temp.replace(path)
    finally:
        temp.unlink(missing_ok=True)
    return path


def _compress(ds: Dataset, syntax: str) -> None:
    try:
        ds.compress(syntax, encoding_plugin=ENCODING_PLUGINS[syntax], generate_instance_uid=False)
    except (RuntimeError, ValueError, ImportError) as error:
        raise PhantomExportError(f"cannot encode transfer syntax {syntax}: {error}") from error


def _write_jpeg_lossless(ds: Dataset, path: Path) -> None:
    """JPEG lossless SV1 through dcmtk's dcmcjpeg: no installed Python encoder does it."""
    tool = shutil.which("dcmcjpeg")
    if tool is None:
        raise PhantomExportError(
            "JPEG lossless (1.2.840.10008.1.2.4.70) needs dcmtk's dcmcjpeg: apt-get install dcmtk"
        )
    with tempfile.TemporaryDirectory() as scratch:
        plain = Path(scratch) / "plain.dcm"
        ds.save_as(plain, enforce_file_format=True)
        result = subprocess.run(
            [tool, "+e1", "+un", str(plain), str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode != 0:
        message = result.stderr.strip().splitlines()[-1:] or ["no message"]
        raise PhantomExportError(f"dcmcjpeg failed to encode JPEG lossless: {message[0]}")


def _sop_class(case: PhantomCase) -> str:
    return DX_PRESENTATION_STORAGE if case.acquisition.modality == "DX" else CR_IMAGE_STORAGE


def _patient_and_study(ds: Dataset, case: PhantomCase, uids: dict[str, str]) -> None:
    who = case.identity
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = _sop_class(case)
    ds.SOPInstanceUID = uids["instance"]
    ds.PatientName = who.patient_name
    ds.PatientID = case.patient_id
    ds.PatientBirthDate = who.birth_date
    ds.PatientSex = who.sex
    ds.PatientAge = f"{who.age:03d}Y"
    ds.StudyInstanceUID = uids["study"]
    ds.StudyDate = who.study_date
    ds.StudyTime = who.study_time
    ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = who.study_date
    ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = who.study_time
    ds.AccessionNumber = who.accession
    ds.ReferringPhysicianName = who.referring_physician
    ds.StudyID = str(case.index)
    ds.StudyDescription = "XR CHEST 1 VIEW"
    ds.InstitutionName = who.institution


def _series_and_equipment(ds: Dataset, case: PhantomCase, uids: dict[str, str]) -> None:
    acq = case.acquisition
    ds.Modality = acq.modality
    ds.SeriesInstanceUID = uids["series"]
    ds.SeriesNumber = 1
    ds.SeriesDescription = f"CHEST {acq.view}"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = acq.view
    ds.PatientPosition = ""
    ds.Manufacturer = "EchoCXR Phantom"
    ds.ManufacturerModelName = "Procedural chest generator"
    ds.SoftwareVersions = "1"
    ds.KVP = f"{acq.kvp:.1f}"
    ds.ExposureInuAs = round(acq.mas * 1000)


def _image(
    ds: Dataset, case: PhantomCase, pixels: np.ndarray, padding: int, downscale: int
) -> None:
    acq = case.acquisition
    spacing = f"{acq.pixel_spacing_mm * downscale:.4f}".rstrip("0")
    ds.ImageType = ["ORIGINAL", "PRIMARY", ""]
    ds.InstanceNumber = 1
    ds.PatientOrientation = ["L", "F"] if acq.view == "AP" else ["R", "F"]
    ds.ImageLaterality = "U"
    ds.BurnedInAnnotation = "YES"
    ds.LossyImageCompression = "00"
    ds.ImagerPixelSpacing = [spacing, spacing]
    ds.PixelSpacing = [spacing, spacing]
    ds.PixelSpacingCalibrationType = "GEOMETRY"
    ds.PixelSpacingCalibrationDescription = "Detector geometry, no magnification correction"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = acq.photometric
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = acq.bits_stored
    ds.HighBit = acq.bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelPaddingValue = padding
    ds.PresentationLUTShape = "IDENTITY" if acq.photometric == "MONOCHROME2" else "INVERSE"
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.PixelData = pixels.tobytes()


def _voi(ds: Dataset, case: PhantomCase, pixels: np.ndarray, padding: int) -> None:
    """Window centre/width, or a sigmoid VOI LUT, fitted to the exposed field's histogram."""
    sample = pixels[::4, ::4]  # the histogram of every 16th pixel is plenty for a window
    exposed = sample[sample != padding]
    low, high = (
        np.percentile(exposed, [1, 99])
        if exposed.size
        else (0, 2**case.acquisition.bits_stored - 1)
    )
    low, high = int(low), max(int(high), int(low) + 2)
    if case.acquisition.voi == "window":
        ds.WindowCenter = f"{(low + high) / 2:.1f}"
        ds.WindowWidth = f"{high - low:.1f}"
        ds.VOILUTFunction = "LINEAR"
        ds.WindowCenterWidthExplanation = "PHANTOM FIELD 1-99%"
        return
    ds.VOILUTSequence = [_voi_lut_item(low, high)]


def _voi_lut_item(low: int, high: int) -> Dataset:
    from pydicom import Dataset
    from pydicom.dataelem import DataElement

    entries = high - low + 1
    t = np.linspace(-4.0, 4.0, entries)
    table = np.rint((2**VOI_LUT_BITS - 1) / (1.0 + np.exp(-t))).astype(np.uint16)
    item = Dataset()
    item.LUTDescriptor = [entries, low, VOI_LUT_BITS]
    item.LUTExplanation = "PHANTOM SIGMOID"
    # OW, not US: a table over 32k entries overflows the 16-bit length of an explicit US.
    item.add(DataElement(0x00283006, "OW", table.astype("<u2").tobytes()))
    return item


def _dx_modules(ds: Dataset, case: PhantomCase, downscale: int) -> None:
    from pydicom import Dataset

    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1
    ds.DetectorType = "SCINTILLATOR"
    ds.AcquisitionContextSequence = []
    ds.PositionerType = ""
    region = Dataset()
    region.CodeValue = "51185008"
    region.CodingSchemeDesignator = "SCT"
    region.CodeMeaning = "Thorax"
    ds.AnatomicRegionSequence = [region]
    view = Dataset()
    view.CodeValue = "399348003" if case.acquisition.view == "AP" else "399260004"
    view.CodingSchemeDesignator = "SCT"
    view.CodeMeaning = "antero-posterior" if case.acquisition.view == "AP" else "postero-anterior"
    ds.ViewCodeSequence = [view]
