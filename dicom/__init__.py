"""DICOM in and out: read and decode chest radiographs, de-identify, write draft reports.

Public names are re-exported here; ``read_study`` is the entry point for everything read and
every refusal is a ``DicomError`` subclass. The names load on first use (PEP 562), so importing
``dicom`` (for example by the CLI's ``--help``) does not pull in pydicom, MONAI or highdicom.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dicom.bundle import write_report_bundle
    from dicom.burned_in import BurnedInAnnotation, detect_burned_in, mask_burned_in
    from dicom.deid import (
        DeidOptions,
        ReidEntry,
        ReidStore,
        deidentify,
        reidentify_for_sr,
        reidentify_study,
    )
    from dicom.dicomweb import DicomWebClient
    from dicom.draft import AlgorithmIdentity, DraftReport, ReportState, Signature
    from dicom.errors import (
        ArchiveError,
        DicomError,
        DicomWebError,
        ImageLimitError,
        InconsistentUidError,
        InvalidHeaderError,
        MissingPixelDataError,
        MultiFrameError,
        NotChestRadiographError,
        NotDicomError,
        ReidentificationError,
        ReportInputError,
        TruncatedError,
        UnsupportedTransferSyntaxError,
    )
    from dicom.fhir import fhir_diagnostic_report
    from dicom.pdf import write_encapsulated_pdf
    from dicom.pixels import PixelSpacing
    from dicom.read import FrontalImage, Series, SetAside, Study, read_study
    from dicom.sources import ReadLimits
    from dicom.sr import cited_images, write_sr
    from dicom.summary import describe_study, summarize_study
    from dicom.transforms import to_model_input

_MODULE_OF = {
    "AlgorithmIdentity": "dicom.draft",
    "DraftReport": "dicom.draft",
    "ReportState": "dicom.draft",
    "Signature": "dicom.draft",
    "write_sr": "dicom.sr",
    "cited_images": "dicom.sr",
    "write_encapsulated_pdf": "dicom.pdf",
    "fhir_diagnostic_report": "dicom.fhir",
    "write_report_bundle": "dicom.bundle",
    "DeidOptions": "dicom.deid",
    "ReidEntry": "dicom.deid",
    "ReidStore": "dicom.deid",
    "deidentify": "dicom.deid",
    "reidentify_for_sr": "dicom.deid",
    "reidentify_study": "dicom.deid",
    "BurnedInAnnotation": "dicom.burned_in",
    "detect_burned_in": "dicom.burned_in",
    "mask_burned_in": "dicom.burned_in",
    "DicomWebClient": "dicom.dicomweb",
    "ArchiveError": "dicom.errors",
    "DicomError": "dicom.errors",
    "DicomWebError": "dicom.errors",
    "FrontalImage": "dicom.read",
    "ImageLimitError": "dicom.errors",
    "InconsistentUidError": "dicom.errors",
    "InvalidHeaderError": "dicom.errors",
    "MissingPixelDataError": "dicom.errors",
    "MultiFrameError": "dicom.errors",
    "NotChestRadiographError": "dicom.errors",
    "NotDicomError": "dicom.errors",
    "PixelSpacing": "dicom.pixels",
    "ReadLimits": "dicom.sources",
    "ReidentificationError": "dicom.errors",
    "ReportInputError": "dicom.errors",
    "Series": "dicom.read",
    "SetAside": "dicom.read",
    "Study": "dicom.read",
    "TruncatedError": "dicom.errors",
    "UnsupportedTransferSyntaxError": "dicom.errors",
    "describe_study": "dicom.summary",
    "read_study": "dicom.read",
    "summarize_study": "dicom.summary",
    "to_model_input": "dicom.transforms",
}


def __getattr__(name: str) -> Any:
    """Imports the module that defines ``name`` the first time it is asked for."""
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'dicom' has no attribute {name!r}")
    return getattr(importlib.import_module(_MODULE_OF[name]), name)


__all__ = [
    "AlgorithmIdentity",
    "ArchiveError",
    "BurnedInAnnotation",
    "DeidOptions",
    "DicomError",
    "DicomWebClient",
    "DicomWebError",
    "DraftReport",
    "FrontalImage",
    "ImageLimitError",
    "InconsistentUidError",
    "InvalidHeaderError",
    "MissingPixelDataError",
    "MultiFrameError",
    "NotChestRadiographError",
    "NotDicomError",
    "PixelSpacing",
    "ReadLimits",
    "ReidEntry",
    "ReidStore",
    "ReidentificationError",
    "ReportInputError",
    "ReportState",
    "Series",
    "SetAside",
    "Signature",
    "Study",
    "TruncatedError",
    "UnsupportedTransferSyntaxError",
    "cited_images",
    "deidentify",
    "describe_study",
    "detect_burned_in",
    "fhir_diagnostic_report",
    "mask_burned_in",
    "read_study",
    "reidentify_for_sr",
    "reidentify_study",
    "summarize_study",
    "to_model_input",
    "write_encapsulated_pdf",
    "write_report_bundle",
    "write_sr",
]
