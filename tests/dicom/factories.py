"""Small synthetic DICOM files for the dicom/ tests, built with pydicom (and dcmtk for JPEG).

``radiograph()`` returns a CR/DX data set with a known pixel pattern: a horizontal ramp of stored
values, so tests can compute what a viewer must show from the header alone. Keyword arguments
switch on the header features the pixel pipeline must honour (MONOCHROME1, rescale, windows, a
VOI LUT, padding, magnification). ``save`` writes it in a chosen transfer syntax; ``hostile``
files are made from valid ones by cutting or corrupting bytes.
"""

from __future__ import annotations

import io
import subprocess
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pypdf
from pydicom import Dataset, FileMetaDataset, dcmwrite
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    ComputedRadiographyImageStorage,
    DeflatedExplicitVRLittleEndian,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from dicom.draft import Signature
from dicom.sr import PATIENT_AND_STUDY_TYPE_2  # dciodvfy, not this list, judges the output

# A radiologist's sign-off at a fixed time with a non-UTC offset.
SIGNATURE = Signature(
    "Curie^Marie",
    "Saint Example Radiology",
    datetime(2025, 3, 1, 14, 2, tzinfo=timezone(timedelta(hours=1))),
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
    """Writes ``ds`` in ``syntax`` using pydicom's encoders (RLE, JPEG-LS, JPEG 2000).

    A data set without ``file_meta`` is written as an old ACR-NEMA file: implicit VR little
    endian, no preamble, no File Meta Information.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if not hasattr(ds, "file_meta"):
        dcmwrite(path, ds, implicit_vr=True, little_endian=True)
        return path
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


def dciodvfy_errors(tool: str, path: Path) -> list[str]:
    """The lines dicom3tools' ``dciodvfy`` starts with 'Error' for the file at ``path``."""
    result = subprocess.run([tool, str(path)], capture_output=True, check=False)
    output = (result.stdout + result.stderr).decode("utf-8", errors="replace")
    return [line for line in output.splitlines() if line.startswith("Error")]


def pdf_text(pdf: Dataset) -> str:
    """The text a reader of an encapsulated PDF sees, as pypdf extracts it, line by line."""
    reader = pypdf.PdfReader(io.BytesIO(bytes(pdf.EncapsulatedDocument)))
    return "\n".join(page.extract_text() for page in reader.pages)


def processing_equipment(sr: Dataset) -> Dataset:
    """The model's item of ContributingEquipmentSequence (109102, DCM, Processing Equipment)."""
    return next(
        item
        for item in sr.ContributingEquipmentSequence
        if item.PurposeOfReferenceCodeSequence[0].CodeValue == "109102"
    )


# Attributes a real CR/DX header may lack beyond those (Type 3, or Type 2 of other modules).
OFTEN_MISSING = (
    "StudyDescription",
    "PatientAge",
    "Manufacturer",
    "SeriesNumber",
    "InstanceNumber",
    "BodyPartExamined",
    "ViewPosition",
    "ImagerPixelSpacing",
    "SeriesDate",
    "ContentDate",
    "InstitutionName",
)
# Patient names in the character sets PS3.5 Annex H-K gives as examples, and the term declaring it.
NAMES_BY_CHARACTER_SET: dict[str, tuple[str | list[str], str]] = {
    "Latin-1": ("ISO_IR 100", "Müller^Jürgen"),
    "UTF-8": ("ISO_IR 192", "Øvergård^Åse"),
    "Japanese ISO 2022": (["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎=やまだ^たろう"),
    "Chinese GB18030": ("GB18030", "Wang^XiaoDong=王^小东"),
}


def without(ds: Dataset, *keywords: str) -> Dataset:
    """``ds`` with the named attributes deleted (those it has)."""
    for keyword in keywords:
        if keyword in ds:
            delattr(ds, keyword)
    return ds


def eight_bit_radiograph(**extra: Any) -> Dataset:
    """A radiograph of 8 bits allocated and stored, as secondary captures often are."""
    ds = radiograph(bits_stored=8, **extra)
    ds.BitsAllocated = 8
    ds.PixelData = ramp(int(ds.Rows), int(ds.Columns), 8).astype(np.uint8).tobytes()
    return ds


def acr_nema(ds: Dataset) -> Dataset:
    """``ds`` without File Meta Information, written by ``save`` as an ACR-NEMA style file."""
    del ds.file_meta
    return ds


def computed_radiograph() -> Dataset:
    """A CR Image Storage instance (PS3.3 A.2), as older cassette systems send."""
    ds = radiograph(modality="CR")
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
    return ds


def secondary_capture() -> Dataset:
    """A digitised film: SC Image Storage, 8 bits, no view, body part or spacing (PS3.3 A.8.1)."""
    ds = without(eight_bit_radiograph(modality="CR"), "ViewPosition", "ImagerPixelSpacing")
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.ConversionType = "DF"
    return ds


def header_variants() -> dict[str, Dataset]:
    """Frontal radiograph headers as real archives send them, each one ``read_study`` accepts.

    Every Patient/Study attribute dropped in turn, all of them dropped or empty, no File Meta,
    a secondary capture, CR and DX, MONOCHROME1/2, 8 to 16 bits stored, five character sets and
    legacy or invalid values of Type 2 and 3 attributes.
    """
    with warnings.catch_warnings():  # pydicom warns of the invalid values set on purpose
        warnings.simplefilter("ignore", UserWarning)
        return _header_variants()


def _header_variants() -> dict[str, Dataset]:
    variants = {f"no {kw}": without(radiograph(), kw) for kw in PATIENT_AND_STUDY_TYPE_2}
    variants.update({f"no {kw}": without(radiograph(), kw) for kw in OFTEN_MISSING})
    bare = without(radiograph(), *PATIENT_AND_STUDY_TYPE_2, *OFTEN_MISSING)
    empty: dict[str, Any] = dict.fromkeys(PATIENT_AND_STUDY_TYPE_2, "")
    variants.update(
        {
            "no patient or study attribute": bare,
            "every patient and study attribute empty": radiograph(**empty),
            "no file meta (ACR-NEMA)": acr_nema(radiograph()),
            "no file meta and no patient or study attribute": acr_nema(
                without(radiograph(), *PATIENT_AND_STUDY_TYPE_2, *OFTEN_MISSING)
            ),
            "no SOPClassUID, file meta names it": without(radiograph(), "SOPClassUID"),
            "secondary capture": secondary_capture(),
            "CR": computed_radiograph(),
            "MONOCHROME1": radiograph(photometric="MONOCHROME1"),
            "8 bits": eight_bit_radiograph(),
            **{f"{bits} bits": radiograph(bits_stored=bits) for bits in (10, 14, 16)},
            "signed 16 bits": radiograph(bits_stored=15, PixelRepresentation=1),
            "ACR-NEMA dates and times": radiograph(
                PatientBirthDate="1961.02.14", StudyDate="2025.03.01", StudyTime="10:15:00"
            ),
            "PatientSex U": radiograph(PatientSex="U"),
            "PatientSex lower case": radiograph(PatientSex="f"),
            "PatientAge without unit": radiograph(PatientAge="64"),
            "StudyTime with fraction": radiograph(StudyTime="101500.123456"),
            "AccessionNumber over 16 characters": radiograph(AccessionNumber="ACC-2025-0000099812"),
            "undeclared Latin-1 name": _undeclared_latin1_name(),
            "one-component name": radiograph(PatientName="JOHN DOE"),
        }
    )
    for label, (character_set, name) in NAMES_BY_CHARACTER_SET.items():
        variants[f"{label} name"] = radiograph(SpecificCharacterSet=character_set, PatientName=name)
    return variants


def _undeclared_latin1_name() -> Dataset:
    """Latin-1 bytes without (0008,0005) SpecificCharacterSet: common, and invalid."""
    ds = radiograph()
    ds.add_new(0x00100010, "PN", b"M\xfcller^J\xfcrgen")
    return ds
