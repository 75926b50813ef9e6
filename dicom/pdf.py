"""The report as a PDF (reportlab) inside a DICOM Encapsulated PDF object (Modality DOC).

Many viewers do not render a text SR, but all of them open an encapsulated PDF; Modality
``DOC`` (not ``OT``) is what PDF-aware viewers look for (TotalSegmentator-AIDE #27). The
Patient and Study modules are copied from the source exactly as for the SR, and the page
prints them as a radiology report's header, so a printed draft can be matched to its patient.
A draft says PRELIMINARY and "not verified"; a signed version names the radiologist instead.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime

from pydicom import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, EncapsulatedPDFStorage, ExplicitVRLittleEndian
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, StyleSheet1, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from dicom.draft import (
    DraftReport,
    Signature,
    derived_uid,
    person_name_groups,
    person_name_parts,
)
from dicom.errors import ReportInputError
from dicom.pdf_fonts import report_fonts
from dicom.read import Study
from dicom.sr import (
    COMPLETION_DESCRIPTION,
    DIAGNOSTIC_IMAGING_REPORT,
    REPORT_CHARACTER_SET,
    copy_patient_and_study,
    report_source,
    valid_value,
)

PDF_SERIES_NUMBER = 9902
SIGNED_PDF_SERIES_NUMBER = 9904
DOCUMENT_TITLE = "PRELIMINARY: AI draft chest radiograph report (unverified)"
SIGNED_DOCUMENT_TITLE = "Chest radiograph report"
NOT_RECORDED = "not recorded"


def render_pdf(draft: DraftReport, study: Study, signature: Signature | None = None) -> bytes:
    """One page: title, status line, the identifying header, Findings, Impression, the model.

    Raises
    ------
    ReportInputError
        When the study holds no frontal image to take the identifiers from.
    """
    styles = report_styles()
    title = DOCUMENT_TITLE if signature is None else SIGNED_DOCUMENT_TITLE
    story = [
        Paragraph(markup(title), styles["Title"]),
        Paragraph(markup(status_line(signature)), styles["Heading3"]),
        *_warning_box(draft.warnings(), styles["BodyText"]),
        _identifying_table(identifying_rows(study), styles["BodyText"]),
        Spacer(1, 12),
    ]
    for heading, text in (("Findings", draft.findings), ("Impression", draft.impression)):
        if text.strip():
            story += [
                Paragraph(heading, styles["Heading2"]),
                Paragraph(markup(text), styles["BodyText"]),
            ]
    story += _probability_table(draft, styles)
    model = model_line(draft)
    story += [Spacer(1, 12), Paragraph(markup(model), styles["Italic"])]
    buffer = io.BytesIO()
    SimpleDocTemplate(buffer, pagesize=A4, title=title, author=model).build(story)
    return buffer.getvalue()


def report_styles() -> StyleSheet1:
    """reportlab's sample styles set in the report's fonts (``dicom.pdf_fonts``)."""
    fonts, styles = report_fonts(), getSampleStyleSheet()
    for name in ("Title", "Heading2", "Heading3"):
        styles[name].fontName = fonts.bold
    # DejaVu Sans runs ~15% wider than Helvetica: the status words stay on the title's first line
    styles["Title"].fontSize, styles["Title"].leading = 16, 20
    styles["BodyText"].fontName = fonts.regular
    styles["Italic"].fontName = fonts.italic
    return styles


def markup(text: str) -> str:
    """``text`` as Paragraph markup that prints every character it can (``dicom.pdf_fonts``)."""
    return report_fonts().markup(text)


def status_line(signature: Signature | None) -> str:
    """Who stands behind the text: nobody yet (the draft warning), or the radiologist who signed."""
    if signature is None:
        return COMPLETION_DESCRIPTION
    when = signature.signed_at.isoformat(sep=" ", timespec="minutes")
    return f"SIGNED by {person_display(signature.name)} ({signature.organization}), {when}"


def model_line(draft: DraftReport) -> str:
    """The model, its decoding and its weights, so a reader can tell which system drafted it."""
    algorithm = draft.algorithm
    decoding = algorithm.decoding or "the model's default"
    return (
        f"Drafted by {algorithm.name} {algorithm.version} ({algorithm.manufacturer}); "
        f"decoding: {decoding}; weights sha256 {algorithm.checkpoint_sha256[:16]}"
    )


def identifying_rows(study: Study) -> list[tuple[str, str]]:
    """What a printed report is matched to its patient by, from the study it is written for.

    For a de-identified study these are its pseudonyms (or empty values); the re-identified study
    (``dicom.deid.reidentify_study``) gives the originals, as ``reidentify_for_sr`` does for the SR.
    """
    source = report_source(_first_header(study))
    birth = _date(source.PatientBirthDate)
    sex = str(source.PatientSex) or NOT_RECORDED
    when = " ".join(part for part in (_date(source.StudyDate), _time(source.StudyTime)) if part)
    return [
        ("Patient", person_display(str(source.PatientName)) or NOT_RECORDED),
        ("Patient ID", str(source.PatientID) or NOT_RECORDED),
        ("Birth date / sex", f"{birth or NOT_RECORDED} / {sex}"),
        ("Study date and time", when or NOT_RECORDED),
        ("Accession number", str(source.AccessionNumber) or NOT_RECORDED),
        ("Exam", exam_description(study) or NOT_RECORDED),
        ("Referring physician", person_display(str(source.ReferringPhysicianName)) or NOT_RECORDED),
    ]


def exam_description(study: Study) -> str:
    """StudyDescription, body part and frontal views: 'XR CHEST; body part CHEST; view PA'."""
    header = _first_header(study)
    labelled = (("", "StudyDescription"), ("body part ", "BodyPartExamined"))
    values = [(label, valid_value(header[kw]) if kw in header else None) for label, kw in labelled]
    described = [f"{label}{value}" for label, value in values if value]
    views = ", ".join(image.view_position for image in study.frontal_images if image.view_position)
    return "; ".join([*described, f"view {views}"] if views else described)


def person_display(name: str) -> str:
    """'Family, Given Middle' from a DICOM person name (``person_name_parts``), its other
    component groups after it: 'Yamada, Tarou (山田 太郎; やまだ たろう)', as a Japanese or
    Korean reader matches a patient by the ideographic and phonetic names."""
    family, given, middle, prefix, suffix = person_name_parts(name)
    rest = " ".join(part for part in (prefix, given, middle, suffix) if part)
    first = ", ".join(part for part in (family, rest) if part)
    others = [" ".join(p for p in group.split("^") if p) for group in person_name_groups(name)[1:]]
    return f"{first} ({'; '.join(others)})" if others else first


def _date(value: object) -> str:
    """A DA value as 1961-02-14 ('' when empty)."""
    text = str(value)
    return f"{text[:4]}-{text[4:6]}-{text[6:8]}" if len(text) == 8 else text


def _time(value: object) -> str:
    """A TM value as 10:15 or 10:15:30 ('' when empty)."""
    text = str(value).split(".")[0]
    return ":".join(text[i : i + 2] for i in range(0, len(text), 2))


def _identifying_table(rows: list[tuple[str, str]], style: ParagraphStyle) -> Table:
    """Label and value side by side; values wrap, so a long name never leaves the page."""
    cells = [
        [Paragraph(f"<b>{markup(label)}</b>", style), Paragraph(markup(value), style)]
        for label, value in rows
    ]
    table = Table(cells, colWidths=[45 * mm, 120 * mm], hAlign="LEFT")
    table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP")]))
    return table


def _warning_box(lines: list[str], style: ParagraphStyle) -> list[Flowable]:
    """The draft's warnings in a thick red box above everything else but the title: a reader
    of the printed draft cannot miss them. Nothing when there is nothing to warn of."""
    if not lines:
        return []
    cells = [[Paragraph(f"<b>{markup(line)}</b>", style)] for line in lines]
    box = Table(cells, colWidths=[165 * mm], hAlign="LEFT")
    box.setStyle(
        TableStyle(
            [
                ("BOX", (0, 0), (-1, -1), 2.5, colors.red),
                ("BACKGROUND", (0, 0), (-1, -1), colors.HexColor("#fde8e8")),
                ("TOPPADDING", (0, 0), (-1, -1), 4),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 4),
            ]
        )
    )
    return [box, Spacer(1, 10)]


def _probability_table(draft: DraftReport, styles: StyleSheet1) -> list[Flowable]:
    """Each observation's calibrated probability, most likely first (none without them)."""
    probabilities = draft.probabilities
    if not probabilities:
        return []
    heading = "Calibrated probability per observation"
    if draft.ood_warning():
        heading += " (not reliable: the image is outside the training distribution)"
    rows = [["Observation", "Probability"]]
    rows += [[name, f"{100 * float(p):.0f} %"] for name, p in probabilities.items()]
    table = Table(rows, colWidths=[80 * mm, 30 * mm], hAlign="LEFT")
    table.setStyle(
        TableStyle(
            [
                ("FONTNAME", (0, 0), (-1, -1), report_fonts().regular),
                ("FONTNAME", (0, 0), (-1, 0), report_fonts().bold),
                ("LINEBELOW", (0, 0), (-1, 0), 0.75, colors.black),
                ("ALIGN", (1, 0), (1, -1), "RIGHT"),
            ]
        )
    )
    return [Paragraph(markup(heading), styles["Heading2"]), table]


def _first_header(study: Study) -> Dataset:
    if not study.frontal_images:
        raise ReportInputError("the study has no image to copy the Patient and Study modules from")
    return study.frontal_images[0].dataset


def write_encapsulated_pdf(
    draft: DraftReport, study: Study, signature: Signature | None = None
) -> Dataset:
    """An Encapsulated PDF instance of the report in the source study, UIDs derived as for SR.

    With a ``signature`` it is the signed version: the signer in place of PRELIMINARY and the
    draft warning, and UIDs of its own.

    Raises
    ------
    ReportInputError
        When the study holds no frontal image to take the Patient and Study modules from.
    """
    algorithm = draft.algorithm
    sop_uid = derived_uid(study, algorithm, "pdf-instance", signature)
    ds = Dataset()
    ds.file_meta = _file_meta(sop_uid)
    copy_patient_and_study(report_source(_first_header(study)), ds)
    _document_series(ds, derived_uid(study, algorithm, "pdf-series", signature), signature)
    _equipment(ds, draft)
    _document(ds, render_pdf(draft, study, signature), signature)
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


def _document_series(ds: Dataset, series_uid: str, signature: Signature | None) -> None:
    """Encapsulated Document Series module (PS3.3 C.24.1)."""
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = PDF_SERIES_NUMBER if signature is None else SIGNED_PDF_SERIES_NUMBER
    ds.SeriesDescription = (
        "AI draft report (unverified, PDF)" if signature is None else "Signed report (PDF)"
    )


def _equipment(ds: Dataset, draft: DraftReport) -> None:
    """General and SC Equipment modules: the model is the equipment that wrote the document."""
    ds.Manufacturer = draft.algorithm.manufacturer
    ds.ManufacturerModelName = draft.algorithm.model_name
    ds.SoftwareVersions = draft.algorithm.version
    ds.ConversionType = "WSD"


def _document(ds: Dataset, pdf: bytes, signature: Signature | None) -> None:
    """Encapsulated Document module (PS3.3 C.24.2), padded to even length as OB requires."""
    now = datetime.now(UTC)
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.AcquisitionDateTime = now.strftime("%Y%m%d%H%M%S")
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = DOCUMENT_TITLE if signature is None else SIGNED_DOCUMENT_TITLE
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
