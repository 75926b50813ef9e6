"""Small synthetic DICOM files for the dicom/ tests, built with pydicom (and dcmtk for JPEG).

``radiograph()`` returns a CR/DX data set with a known pixel pattern: a horizontal ramp of stored
values, so tests can compute what a viewer must show from the header alone. Keyword arguments
switch on the header features the pixel pipeline must honour (MONOCHROME1, rescale, windows, a
VOI LUT, padding, magnification). ``save`` writes it in a chosen transfer syntax; ``hostile``
files are made from valid ones by cutting or corrupting bytes.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import Dataset, FileMetaDataset, dcmwrite
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    generate_uid,
)

PATIENT_NAME = "Testpatient^Identifiable"
PATIENT_ID = "PID-7734-SECRET"
STUDY_UID = "1.2.826.0.1.3680043.8.498.100"


def ramp(rows: int, columns: int, bits_stored: int) -> np.ndarray:
    """Stored values rising left to right over the full range, the same on every row."""
    top = 2**bits_stored - 1
    line = np.round(np.linspace(0, top, columns)).astype(np.uint16)
    return np.tile(line, (rows, 1))


def radiograph(
    *,
    rows: int = 96,
    columns: int = 128,
    bits_stored: int = 12,
    photometric: str = "MONOCHROME2",
    modality: str = "DX",
    view: str | None = "PA",
    body_part: str | None = "CHEST",
    study_uid: str = STUDY_UID,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    pixels: np.ndarray | None = None,
    **extra: Any,
) -> Dataset:
    """A single-frame radiograph; ``extra`` keywords are set on the data set as given."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sop_uid = sop_uid or str(generate_uid())
    ds.file_meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid or generate_uid()
    _patient_and_study(ds)
    ds.Modality = modality
    if view is not None:
        ds.ViewPosition = view
    if body_part is not None:
        ds.BodyPartExamined = body_part
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 0
    ds.ImagerPixelSpacing = [0.139, 0.139]
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    data = ramp(rows, columns, bits_stored) if pixels is None else pixels
    ds.PixelData = data.astype(np.uint16).tobytes()
    return ds


def _patient_and_study(ds: Dataset) -> None:
    """Identifying attributes with known values, so tests can look for leaks."""
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = "19610214"
    ds.PatientSex = "F"
    ds.PatientAge = "064Y"
    ds.StudyDate, ds.StudyTime = "20250301", "101500"
    ds.SeriesDate, ds.ContentDate = "20250301", "20250301"
    ds.AccessionNumber = "ACC-99812"
    ds.StudyID = "S1"
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.ReferringPhysicianName = "Referrer^Doctor"
    ds.InstitutionName = "Saint Example Hospital"
    ds.StudyDescription = "XR CHEST PA"
    ds.Manufacturer = "EchoCXR test factory"


def voi_lut_item(first: int, count: int, output_bits: int, data: np.ndarray) -> Dataset:
    """One VOI LUT Sequence item mapping ``count`` inputs from ``first`` to ``data``."""
    item = Dataset()
    item.LUTDescriptor = [count, first, output_bits]
    item.add_new(0x00283006, "OW", np.asarray(data, dtype="<u2").tobytes())
    return item


def with_voi_lut(ds: Dataset, item: Dataset) -> Dataset:
    """The data set with a VOI LUT Sequence of one item."""
    ds.VOILUTSequence = Sequence([item])
    return ds


def save(ds: Dataset, path: Path, syntax: str = ExplicitVRLittleEndian) -> Path:
    """Writes ``ds`` in ``syntax`` using pydicom's encoders (RLE, JPEG-LS, JPEG 2000)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    copy = Dataset(ds)
    copy.file_meta = FileMetaDataset(ds.file_meta)
    if syntax == DeflatedExplicitVRLittleEndian:
        copy.file_meta.TransferSyntaxUID = UID(syntax)
    elif syntax != ExplicitVRLittleEndian:
        copy.compress(syntax)
    dcmwrite(path, copy, enforce_file_format=True)
    return path


def dcmtk_compress(source: Path, target: Path, *options: str) -> Path:
    """JPEG files through dcmtk's ``dcmcjpeg`` (e.g. ``+e1`` baseline, ``+el`` lossless)."""
    tool = "dcmcjpls" if options and options[0] == "jpegls" else "dcmcjpeg"
    args = list(options[1:]) if tool == "dcmcjpls" else list(options)
    subprocess.run([tool, *args, str(source), str(target)], check=True, capture_output=True)
    return target


def write_file(ds: Dataset, path: Path) -> bytes:
    """Writes ``ds`` uncompressed and returns the file's bytes (for hostile variants)."""
    save(ds, path)
    return path.read_bytes()


def processing_equipment(sr: Dataset) -> Dataset:
    """The model's item of ContributingEquipmentSequence (109102, DCM, Processing Equipment)."""
    return next(
        item
        for item in sr.ContributingEquipmentSequence
        if item.PurposeOfReferenceCodeSequence[0].CodeValue == "109102"
    )
