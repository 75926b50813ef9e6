"""``read_study``: files in, the frontal chest radiographs of one study out, or a ``DicomError``.

The steps, each a function: ``gather`` the files (dicom.sources), ``parse`` each into a data
set, ``check_uids`` across them, ``group`` into study → series → instance, ``classify`` every
instance as frontal or set aside (with the tag that decided), ``check_image`` the header of each
frontal image against ``ReadLimits``, then decode it to display values (dicom.pixels).

``decode_pixels=False`` stops before the last step: every header check still runs, so a service
can refuse a bad upload at once without paying for the decode it leaves to the workers.
"""

from __future__ import annotations

import io
import logging
import re
import warnings
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import numpy as np
import pydicom
from pydicom import Dataset
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import RawDataElement
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MediaStorageDirectoryStorage,
)

from dicom.errors import (
    ArchiveError,
    DicomError,
    ImageLimitError,
    InconsistentUidError,
    InvalidHeaderError,
    MissingPixelDataError,
    MultiFrameError,
    NotChestRadiographError,
    NotDicomError,
    TruncatedError,
)
from dicom.pixels import PixelSpacing, check_display_header, pixel_spacing, to_display
from dicom.sources import ReadLimits, SourceFile, gather

logger = logging.getLogger(__name__)

RADIOGRAPH_MODALITIES = frozenset({"CR", "DX"})
# Substrings of (0018,0015) BodyPartExamined that mean a chest: the defined term is CHEST, but
# sites also send THORAX, LUNG, "PORT CHEST" or local-language terms (TORAX, TORACE).
CHEST_BODY_PART_WORDS = ("CHEST", "THORA", "LUNG", "TORAX", "TORACE")
FRONTAL_VIEWS = frozenset({"PA", "AP"})
_UID_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_END_OF_FILE = "End of file reached before delimiter"
_TAG_HEADER_BYTES = 8
_UNDEFINED_LENGTH = 0xFFFFFFFF
_PARSE_FAILURES = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    EOFError,
    OverflowError,
    OSError,
    NotImplementedError,
    AttributeError,
    BytesLengthException,
)
NO_PIXELS = np.zeros((0, 0), np.float32)  # the pixels of an image read for its header only


@dataclass(frozen=True)
class FrontalImage:
    """A frontal chest radiograph as a viewer shows it, with what a report needs about it.

    Attributes
    ----------
    pixels
        float32 (rows, columns) in [0, 1]; higher is brighter on a viewer. Empty (``NO_PIXELS``)
        when the study was read with ``decode_pixels=False`` or its pixels were released.
    pixel_spacing_mm
        Spacing and the tag it came from, or None when the header gives none.
    view_position
        (0018,5101) ViewPosition: 'PA', 'AP', or '' when the header does not say.
    dataset
        The source header without PixelData, for writing SR evidence and copying modules.
    """

    pixels: np.ndarray
    pixel_spacing_mm: PixelSpacing | None
    view_position: str
    sop_instance_uid: str
    series_instance_uid: str
    dataset: Dataset = field(repr=False)


@dataclass(frozen=True)
class SetAside:
    """An instance (or file) not used as a frontal image, and the reason naming the tag."""

    sop_instance_uid: str
    reason: str
    source: str = ""


@dataclass(frozen=True)
class Series:
    """One series of the study: its UID, modality and the SOP Instance UIDs it holds."""

    series_instance_uid: str
    modality: str
    sop_instance_uids: tuple[str, ...]


@dataclass(frozen=True)
class Study:
    """One study as read: its series, the frontal images and what was set aside, with why."""

    study_instance_uid: str
    series: tuple[Series, ...]
    frontal_images: list[FrontalImage]
    set_aside: list[SetAside]

    @property
    def images(self) -> list[FrontalImage]:
        """The frontal images, under the short name callers of the model use."""
        return self.frontal_images

    def restricted_to(self, sop_instance_uids: Collection[str]) -> Study:
        """The study with only the frontal images named: as a report written before it grew
        saw it (``dicom.cited_images`` of that report's SR)."""
        images = [i for i in self.frontal_images if i.sop_instance_uid in sop_instance_uids]
        return replace(self, frontal_images=images)

    def without_pixels(self) -> Study:
        """The study with its images' pixel data released, headers and UIDs kept.

        Writing a report (SR, PDF, FHIR) reads only headers, while a full-resolution image holds
        20-40 MB of float32: a batch of studies waiting for the model keeps this instead.
        """
        images = [replace(image, pixels=NO_PIXELS) for image in self.frontal_images]
        return replace(self, frontal_images=images)


@dataclass(frozen=True)
class _Instance:
    """A parsed file: its header (pixels still encoded) and the file it came from."""

    dataset: Dataset
    source: str


def read_study(
    source: Path | str | bytes, *, limits: ReadLimits | None = None, decode_pixels: bool = True
) -> Study:
    """Reads one study from a file, bytes, a folder, a ZIP/TAR archive or a DICOMDIR.

    Parameters
    ----------
    source
        Path of a file, folder, archive or DICOMDIR, or the bytes of a file or archive.
    limits
        Bounds on sizes, counts and image dimensions; ``ReadLimits()`` when None.
    decode_pixels
        False reads headers only: every check runs as with True (``check_image`` and
        ``check_display_header`` included), but the frontal images keep ``NO_PIXELS``. An
        upload route refuses bad studies this way at a small fraction of the cost; only a
        fault inside the compressed stream itself waits for the full read.

    Returns
    -------
    Study
        The frontal images decoded to display values, and every other instance set aside.

    Raises
    ------
    DicomError
        A subclass naming the tag that decided and what to do, for every refusal.
    """
    limits = limits or ReadLimits()
    source = Path(source) if isinstance(source, str) else source
    instances, set_aside = _parse_all(gather(source, limits))
    instances, listed_aside = _expand_dicomdir(source, instances, limits)
    set_aside.extend(listed_aside)
    if not instances:
        raise NotDicomError(_nothing_readable(set_aside))
    study_uid = check_uids(instances)
    frontal, more_aside = classify([i.dataset for i in instances])
    set_aside.extend(more_aside)
    if not frontal:
        _refuse_without_frontal(set_aside)
    images = [_frontal_image(ds, limits, decode_pixels) for ds in frontal]
    logger.info("read study: %d frontal image(s), %d set aside", len(images), len(set_aside))
    return Study(study_uid, group([i.dataset for i in instances]), images, set_aside)


def _parse_all(files: list[SourceFile]) -> tuple[list[_Instance], list[SetAside]]:
    """Parses every file; a lone file must be DICOM, extra non-DICOM files are set aside."""
    if len(files) == 1:
        return [_Instance(parse(files[0].data), files[0].name)], []
    instances, set_aside = [], []
    for item in files:
        try:
            instances.append(_Instance(parse(item.data), item.name))
        except NotDicomError:
            set_aside.append(SetAside("", "not a DICOM file (no DICM preamble)", item.name))
    return instances, set_aside


def parse(data: bytes) -> Dataset:
    """A data set from bytes, with or without the Part 10 preamble (ACR-NEMA style).

    Raises
    ------
    NotDicomError
        Neither a Part 10 file nor a plausible raw data set.
    TruncatedError
        The file ends inside an element.
    InvalidHeaderError
        An element whose value cannot be read with its VR.
    """
    ds: Dataset
    try:
        ds = _read_whole(data)
    except InvalidDicomError:
        ds = _parse_without_preamble(data)
    except _PARSE_FAILURES as error:
        raise TruncatedError(_broken_file_message(error)) from error
    _check_elements(ds.file_meta)
    if "TransferSyntaxUID" not in ds.file_meta:
        ds.file_meta.TransferSyntaxUID = _guessed_syntax(ds)
    _check_elements(ds)
    return ds


def _read_whole(data: bytes) -> Dataset:
    """``dcmread`` that refuses a file ending inside an undefined-length element.

    pydicom only warns when the end of the file comes before a sequence delimiter (typically
    encapsulated pixel data cut in transit) and returns a data set that silently lacks elements;
    such a file is truncated and must be sent again, not half-read.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = pydicom.dcmread(io.BytesIO(data))
    if any(_END_OF_FILE in str(warning.message) for warning in caught) or _ends_inside_element(
        ds, len(data)
    ):
        raise TruncatedError(_broken_file_message(EOFError(_END_OF_FILE)))
    return ds


def _ends_inside_element(ds: Dataset, size: int) -> bool:
    """True when the bytes stop inside the last element's value or tag header.

    pydicom reads a value that is cut short, or stops at a partial tag, without a word; the
    declared lengths of the still-raw elements say where the data set should have ended.
    Deflated data sets are positioned in the inflated stream, so their lengths say nothing here
    (zlib itself refuses a cut deflate stream).
    """
    if ds.file_meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        return False
    last = size
    # iterating the Dataset itself would convert every raw element
    for tag in ds.keys():  # noqa: SIM118
        element = ds.get_item(tag)
        if isinstance(element, RawDataElement) and element.length != _UNDEFINED_LENGTH:
            last = element.value_tell + element.length
    return last > size or 0 < size - last < _TAG_HEADER_BYTES


def _parse_without_preamble(data: bytes) -> Dataset:
    """Old ACR-NEMA files: parsed by force, accepted only if they look like an image header."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except _PARSE_FAILURES as error:
        raise NotDicomError(
            "the input is not DICOM: no 'DICM' preamble and no readable data set; "
            "send a DICOM Part 10 file"
        ) from error
    if "SOPInstanceUID" not in ds and "PixelData" not in ds:
        raise NotDicomError(
            "the input is not DICOM: no 'DICM' preamble, no (0008,0018) SOPInstanceUID and no "
            "(7FE0,0010) PixelData; send a DICOM Part 10 file"
        )
    return ds


def _guessed_syntax(ds: Dataset) -> pydicom.uid.UID:
    """The syntax pydicom detected while reading a file without File Meta."""
    implicit, little = ds.original_encoding
    if implicit or implicit is None:
        return ImplicitVRLittleEndian
    return pydicom.uid.ExplicitVRLittleEndian if little else pydicom.uid.ExplicitVRBigEndian


def _broken_file_message(error: Exception) -> str:
    """One line for a file pydicom could not finish reading (no values quoted)."""
    return (
        f"the DICOM file could not be read to its end ({type(error).__name__}): it is "
        "truncated or corrupt (an impossible element length or VR); export it again"
    )


def _check_elements(ds: Dataset) -> None:
    """Reads every header value once, so a wrong VR is refused here, naming its tag."""
    for tag in list(ds.keys()):
        if tag == 0x7FE00010:
            continue
        try:
            ds[tag].value  # noqa: B018 - converting the raw element is the check
        except _PARSE_FAILURES as error:
            raise InvalidHeaderError(
                f"the element {tag} {keyword_for_tag(tag)} cannot be read with its VR "
                f"({type(error).__name__}); correct the header"
            ) from error


def _expand_dicomdir(
    source: Path | bytes, instances: list[_Instance], limits: ReadLimits
) -> tuple[list[_Instance], list[SetAside]]:
    """A DICOMDIR given alone is replaced by the files it lists; inside a folder it is skipped."""
    alone = len(instances) == 1 and _is_dicomdir(instances[0].dataset)
    if not (alone and isinstance(source, Path) and source.is_file()):
        return [i for i in instances if not _is_dicomdir(i.dataset)], []
    listed = sorted(_listed_files(instances[0].dataset))
    if len(listed) > limits.max_files:
        raise ArchiveError(
            f"the DICOMDIR lists {len(listed)} files, more than the limit of {limits.max_files}"
        )
    paths = [source.parent / name for name in listed if (source.parent / name).is_file()]
    if not paths:
        raise NotDicomError(
            "the DICOMDIR lists no file that exists beside it; copy the media again"
        )
    return _parse_all(
        [SourceFile(str(p.relative_to(source.parent)), p.read_bytes()) for p in paths]
    )


def _is_dicomdir(ds: Dataset) -> bool:
    """True for a Media Storage Directory (DICOMDIR) file."""
    sop_class = ds.file_meta.get("MediaStorageSOPClassUID", ds.get("SOPClassUID", ""))
    return str(sop_class) == MediaStorageDirectoryStorage


def _listed_files(dicomdir: Dataset) -> set[str]:
    """Relative paths (ReferencedFileID) a DICOMDIR lists, refusing any that escape its folder."""
    names = set()
    for record in dicomdir.get("DirectoryRecordSequence", []):
        file_id = record.get("ReferencedFileID")
        if not file_id:
            continue
        parts = [file_id] if isinstance(file_id, str) else list(file_id)
        if any(part in {"..", ""} or "/" in part or "\\" in part for part in parts):
            raise ArchiveError(
                "(0004,1500) ReferencedFileID in the DICOMDIR escapes its folder; "
                "rebuild the DICOMDIR"
            )
        names.add(str(PurePosixPath(*parts)))
    return names


def check_uids(instances: list[_Instance]) -> str:
    """The one StudyInstanceUID, after checking UID syntax and series/study consistency.

    Raises
    ------
    InconsistentUidError
        A missing or malformed UID, several studies, or a series split across studies.
    """
    studies: set[str] = set()
    series_study: dict[str, str] = {}
    for instance in instances:
        ds = instance.dataset
        study = _uid(ds, "StudyInstanceUID", "(0020,000D)")
        series = _uid(ds, "SeriesInstanceUID", "(0020,000E)")
        _uid(ds, "SOPInstanceUID", "(0008,0018)")
        if series_study.setdefault(series, study) != study:
            raise InconsistentUidError(
                "one (0020,000E) SeriesInstanceUID appears under two (0020,000D) "
                "StudyInstanceUIDs; the files are inconsistent: export the study again"
            )
        studies.add(study)
    if len(studies) > 1:
        raise InconsistentUidError(
            f"the input holds {len(studies)} different (0020,000D) StudyInstanceUIDs; "
            "send one study per request"
        )
    return studies.pop()


def _uid(ds: Dataset, keyword: str, tag: str) -> str:
    """A UID attribute, refused when missing, too long or not digits and dots."""
    value = str(ds.get(keyword, "") or "").strip().rstrip("\x00")
    if not value or len(value) > 64 or not _UID_PATTERN.match(value):
        raise InconsistentUidError(
            f"{tag} {keyword} is missing or not a valid UID (digits and dots, at most 64 "
            "characters); correct the header"
        )
    return value


def group(datasets: list[Dataset]) -> tuple[Series, ...]:
    """Study → series → instance, ordered by SeriesNumber, then InstanceNumber."""
    by_series: dict[str, list[Dataset]] = {}
    for ds in datasets:
        by_series.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    ordered = sorted(by_series.items(), key=lambda item: _number(item[1][0], "SeriesNumber"))
    return tuple(
        Series(
            uid,
            str(members[0].get("Modality", "")),
            tuple(str(d.SOPInstanceUID) for d in sorted(members, key=_instance_order)),
        )
        for uid, members in ordered
    )


def _instance_order(ds: Dataset) -> int:
    return _number(ds, "InstanceNumber")


def _number(ds: Dataset, keyword: str) -> int:
    """An IS attribute as int, 0 when absent or unreadable (ordering only)."""
    try:
        return int(ds.get(keyword) or 0)
    except (TypeError, ValueError):
        return 0


def classify(datasets: list[Dataset]) -> tuple[list[Dataset], list[SetAside]]:
    """Splits instances into frontal chest radiographs and the rest, with the deciding tag.

    An image whose ViewPosition is empty counts as frontal only when no instance of the study
    says PA or AP, because many CR systems leave the tag empty on single-view studies.
    """
    candidates, set_aside = [], []
    seen: set[str] = set()
    for ds in datasets:
        reason = _not_chest_radiograph(ds) or _duplicate(ds, seen)
        if reason:
            set_aside.append(SetAside(str(ds.SOPInstanceUID), reason))
        else:
            candidates.append(ds)
    explicit = [ds for ds in candidates if _view(ds) in FRONTAL_VIEWS]
    frontal = explicit or [ds for ds in candidates if _view(ds) == ""]
    for ds in candidates:
        if not any(ds is chosen for chosen in frontal):
            set_aside.append(SetAside(str(ds.SOPInstanceUID), _not_frontal_reason(ds)))
    return frontal, set_aside


def _not_chest_radiograph(ds: Dataset) -> str:
    """The reason an instance is not a chest radiograph, or '' when it is one."""
    modality = str(ds.get("Modality", "")).strip().upper()
    if modality not in RADIOGRAPH_MODALITIES:
        return f"(0008,0060) Modality is {modality or 'empty'!r}, not a radiograph (CR or DX)"
    body_part = str(ds.get("BodyPartExamined", "")).strip().upper()
    if body_part and not any(word in body_part for word in CHEST_BODY_PART_WORDS):
        return f"(0018,0015) BodyPartExamined is {body_part!r}, not CHEST"
    if "PixelData" not in ds:
        return "(7FE0,0010) PixelData is missing: the instance holds no image"
    return ""


def _duplicate(ds: Dataset, seen: set[str]) -> str:
    """'' the first time a SOPInstanceUID is met, a reason every later time."""
    uid = str(ds.SOPInstanceUID)
    if uid in seen:
        return "(0008,0018) SOPInstanceUID repeats an instance already read: duplicate ignored"
    seen.add(uid)
    return ""


def _view(ds: Dataset) -> str:
    """ViewPosition reduced to PA or AP when it starts with one ('AP SUPINE'), else as given."""
    view = str(ds.get("ViewPosition", "")).strip().upper()
    first = view.replace("_", " ").split(" ")[0]
    return first if first in FRONTAL_VIEWS else view


def _not_frontal_reason(ds: Dataset) -> str:
    """Why a chest radiograph is not used as the frontal image."""
    view = _view(ds)
    if view:
        return f"(0018,5101) ViewPosition is {view!r}, not PA or AP: kept for context only"
    return "(0018,5101) ViewPosition is empty while another image of the study is PA or AP"


def _nothing_readable(set_aside: list[SetAside]) -> str:
    count = len(set_aside)
    return f"none of the {count} files is DICOM (no DICM preamble); send DICOM Part 10 files"


def _refuse_without_frontal(set_aside: list[SetAside]) -> None:
    """Raises the refusal naming the deciding tag(s), one reason per kind, deduplicated."""
    reasons = sorted({item.reason for item in set_aside if item.sop_instance_uid})
    if reasons and all("PixelData is missing" in reason for reason in reasons):
        raise MissingPixelDataError(
            "(7FE0,0010) PixelData is missing: the instance holds no image; send the image "
            "instances of the study"
        )
    raise NotChestRadiographError("no frontal chest radiograph in the study: " + "; ".join(reasons))


def check_image(ds: Dataset, limits: ReadLimits) -> None:
    """Refuses headers a projection radiograph cannot have, before any pixel is decoded.

    Raises
    ------
    MultiFrameError, ImageLimitError, InvalidHeaderError
        Naming the tag and the limit.
    """
    frames = _number(ds, "NumberOfFrames") or 1
    if frames > 1:
        raise MultiFrameError(
            f"(0028,0008) NumberOfFrames is {frames}; a chest radiograph has one frame: "
            "send single-frame CR/DX images"
        )
    _check_range(ds, "Rows", "(0028,0010)", limits.min_rows, limits.max_rows)
    _check_range(ds, "Columns", "(0028,0011)", limits.min_columns, limits.max_columns)
    _check_bits(ds, limits)
    samples = _number(ds, "SamplesPerPixel") or 1
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if samples != 1 or photometric not in {"MONOCHROME1", "MONOCHROME2"}:
        raise NotChestRadiographError(
            f"(0028,0004) PhotometricInterpretation is {photometric!r} with (0028,0002) "
            f"SamplesPerPixel {samples}: a radiograph is grayscale (MONOCHROME1/2); send the "
            "original image, not a screenshot"
        )


def _check_range(ds: Dataset, keyword: str, tag: str, low: int, high: int) -> None:
    value = _number(ds, keyword)
    if not low <= value <= high:
        raise ImageLimitError(
            f"{tag} {keyword} is {value}, outside {low}..{high}; this is not a radiograph "
            "matrix (raise ReadLimits if it is legitimate)"
        )


def _check_bits(ds: Dataset, limits: ReadLimits) -> None:
    allocated = _number(ds, "BitsAllocated")
    stored = _number(ds, "BitsStored") or allocated
    if allocated not in {8, 16} or not 1 <= stored <= min(allocated, limits.max_bits_stored):
        raise ImageLimitError(
            f"(0028,0100) BitsAllocated {allocated} with (0028,0101) BitsStored {stored} is not "
            f"a radiograph bit depth (8 or 16 allocated, at most {limits.max_bits_stored} "
            "stored); correct the header"
        )


def _frontal_image(ds: Dataset, limits: ReadLimits, decode_pixels: bool) -> FrontalImage:
    """Checks one frontal instance, decodes it if asked, and keeps its header without pixels."""
    check_image(ds, limits)
    sop_class_uid = _sop_class_uid(ds)
    try:
        check_display_header(ds)
        pixels = to_display(ds) if decode_pixels else NO_PIXELS
    except DicomError:
        raise
    except _PARSE_FAILURES as error:
        raise InvalidHeaderError(
            "the image pixel module (group 0028) cannot be interpreted "
            f"({type(error).__name__}); the header is corrupt: export the image again"
        ) from error
    header = Dataset(ds)
    header.file_meta = ds.file_meta
    if "PixelData" in header:
        del header.PixelData
    header.SOPClassUID = sop_class_uid
    return FrontalImage(
        pixels=pixels,
        pixel_spacing_mm=pixel_spacing(ds),
        view_position=_view(ds),
        sop_instance_uid=str(ds.SOPInstanceUID),
        series_instance_uid=str(ds.SeriesInstanceUID),
        dataset=header,
    )


def _sop_class_uid(ds: Dataset) -> str:
    """(0008,0016) SOPClassUID, else the File Meta's (0002,0002) MediaStorageSOPClassUID.

    A report cites each source image by SOP class and instance (Type 1 in its evidence), so an
    image whose class cannot be told (an ACR-NEMA file without either) is refused here, before
    the model runs, rather than by the SR writer after it.

    Raises
    ------
    InvalidHeaderError
        When neither attribute holds a valid UID.
    """
    for value in (ds.get("SOPClassUID"), ds.file_meta.get("MediaStorageSOPClassUID")):
        text = str(value or "").strip().rstrip("\x00")
        if text and len(text) <= 64 and _UID_PATTERN.match(text):
            return text
    raise InvalidHeaderError(
        "(0008,0016) SOPClassUID is missing or invalid and no (0002,0002) "
        "MediaStorageSOPClassUID stands in for it: a report must cite the image's SOP class; "
        'add it (e.g. dcmodify -i "(0008,0016)=1.2.840.10008.5.1.4.1.1.1" for a CR image) and '
        "send the file again"
    )
