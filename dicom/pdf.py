"""The draft as a PDF (reportlab) inside a DICOM Encapsulated PDF object (Modality DOC).

Many viewers do not render a text SR, but all of them open an encapsulated PDF; Modality
``DOC`` (not ``OT``) is what PDF-aware viewers look for (TotalSegmentator-AIDE #27). The
Patient and Study modules are copied from the source exactly as for the SR.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from xml.sax.saxutils import escape

from pydicom import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, EncapsulatedPDFStorage, ExplicitVRLittleEndian
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer

from dicom.draft import DraftReport, derived_uid
from dicom.errors import ReportInputError
from dicom.read import Study
from dicom.sr import (
    COMPLETION_DESCRIPTION,
    DIAGNOSTIC_IMAGING_REPORT,
    REPORT_CHARACTER_SET,
    copy_patient_and_study,
    report_source,
)

PDF_SERIES_NUMBER = 9902
DOCUMENT_TITLE = "AI draft chest radiograph report (unverified)"


def render_pdf(draft: DraftReport) -> bytes:
    """A one-page PDF: title, the draft warning, Findings, Impression, and the model."""
    styles = getSampleStyleSheet()
    algorithm = draft.algorithm
    story = [
        Paragraph(escape(DOCUMENT_TITLE), styles["Title"]),
        Paragraph(escape(COMPLETION_DESCRIPTION), styles["Italic"]),
        Spacer(1, 12),
    ]
    for heading, text in (("Findings", draft.findings), ("Impression", draft.impression)):
        if text.strip():
            story += [
                Paragraph(heading, styles["Heading2"]),
                Paragraph(escape(text), styles["BodyText"]),
            ]
    model = f"{algorithm.name} {algorithm.version} ({algorithm.manufacturer})"
    story += [Spacer(1, 12), Paragraph(escape(f"Drafted by {model}"), styles["Normal"])]
    buffer = io.BytesIO()
    SimpleDocTemplate(buffer, pagesize=A4, title=DOCUMENT_TITLE, author=model).build(story)
    return buffer.getvalue()


def write_encapsulated_pdf(draft: DraftReport, study: Study) -> Dataset:
    """An Encapsulated PDF instance of the draft in the source study, UIDs derived as for SR.

    Raises
    ------
    ReportInputError
        When the study holds no frontal image to take the Patient and Study modules from.
    """
    if not study.frontal_images:
        raise ReportInputError("the study has no image to copy the Patient and Study modules from")
    sop_uid = derived_uid(study.study_instance_uid, draft.algorithm, "pdf-instance")
    ds = Dataset()
    ds.file_meta = _file_meta(sop_uid)
    copy_patient_and_study(report_source(study.frontal_images[0].dataset), ds)
    _document_series(ds, derived_uid(study.study_instance_uid, draft.algorithm, "pdf-series"))
    _equipment(ds, draft)
    _document(ds, render_pdf(draft))
    ds.SOPClassUID = EncapsulatedPDFStorage
    ds.SOPInstanceUID = sop_uid
    ds.SpecificCharacterSet = REPORT_CHARACTER_SET
    return ds


def _file_meta(sop_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = EncapsulatedPDFStorage
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def _document_series(ds: Dataset, series_uid: str) -> None:
    """Encapsulated Document Series module (PS3.3 C.24.1)."""
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = PDF_SERIES_NUMBER
    ds.SeriesDescription = "AI draft report (unverified, PDF)"


def _equipment(ds: Dataset, draft: DraftReport) -> None:
    """General and SC Equipment modules: the model is the equipment that wrote the document."""
    ds.Manufacturer = draft.algorithm.manufacturer
    ds.ManufacturerModelName = draft.algorithm.model_name
    ds.SoftwareVersions = draft.algorithm.version
    ds.ConversionType = "WSD"


def _document(ds: Dataset, pdf: bytes) -> None:
    """Encapsulated Document module (PS3.3 C.24.2), padded to even length as OB requires."""
    now = datetime.now(UTC)
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.AcquisitionDateTime = now.strftime("%Y%m%d%H%M%S")
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = DOCUMENT_TITLE
    ds.ConceptNameCodeSequence = Sequence([_title_code()])
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = len(pdf)
    ds.EncapsulatedDocument = pdf + (b"\x00" if len(pdf) % 2 else b"")


def _title_code() -> Dataset:
    code = Dataset()
    code.CodeValue = DIAGNOSTIC_IMAGING_REPORT.value
    code.CodingSchemeDesignator = DIAGNOSTIC_IMAGING_REPORT.scheme_designator
    code.CodeMeaning = DIAGNOSTIC_IMAGING_REPORT.meaning
    return code
