"""The refusals ``dicom/`` raises: one ``DicomError`` family, each also its builtin.

Callers catch ``DicomError`` to refuse an upload with its message; code that only knows Python
still catches ``ValueError`` or ``NotImplementedError``. Messages name the tag or keyword that
decided and say what to do, and never quote identifying values (names, IDs, dates): they reach
logs and HTTP responses.
"""

from __future__ import annotations


class DicomError(Exception):
    """Base of every refusal by ``dicom/``; the message is safe to show and to log."""


class NotDicomError(DicomError, ValueError):
    """The input is not a DICOM file (no DICM preamble and no parsable data set)."""


class TruncatedError(DicomError, ValueError):
    """The file ends before a declared element or the pixel data is shorter than declared."""


class MissingPixelDataError(DicomError, ValueError):
    """An image instance without (7FE0,0010) PixelData."""


class MultiFrameError(DicomError, ValueError):
    """More than one frame where a projection radiograph has exactly one."""


class UnsupportedTransferSyntaxError(DicomError, NotImplementedError):
    """A valid transfer syntax that no installed decoder handles (the message names it)."""


class NotChestRadiographError(DicomError, ValueError):
    """A study without a chest radiograph; the message names the tag that decided."""


class ImageLimitError(DicomError, ValueError):
    """Dimensions or bit depths outside the configured ``ReadLimits``."""


class InconsistentUidError(DicomError, ValueError):
    """UIDs that contradict each other (several studies, a series in two studies, bad syntax)."""


class ArchiveError(DicomError, ValueError):
    """An archive that is too large, too deep, holds too many files or escapes its folder."""


class InvalidHeaderError(DicomError, ValueError):
    """A header value that cannot be interpreted (wrong VR, impossible value)."""


class ReportInputError(DicomError, ValueError):
    """A draft or study that cannot be written as SR, PDF or FHIR."""


class ReidentificationError(DicomError, ValueError):
    """A re-identification map that is missing, corrupt or encrypted with another key."""


class DicomWebError(DicomError, RuntimeError):
    """A DICOMweb server refused or failed a request; ``status_code`` is its HTTP status when it
    answered (None when it could not be reached)."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
