"""Reports: one version in any of its renderings (JSON, text, DICOM SR, PDF, FHIR)."""

from __future__ import annotations

import io
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy.orm import Session

import dicom
from dicom.draft import trust_warnings
from service.api.deps import (
    Caller,
    DispatcherDep,
    SessionDep,
    SettingsDep,
    allow,
    audit,
    error_responses,
)
from service.api.presenting import report_public
from service.dispatch import Dispatcher, hand_over_evaluation, hand_over_pushes
from service.models import ADMIN, AUDITOR, RADIOLOGIST
from service.schemas import ErrorDetail, ReportPublic, SignRequest
from workers import storage
from workers.config import Settings
from workers.db import session_scope
from workers.pacs import plan_push
from workers.records import Report, now
from workers.signing import NotSignableError, SignError, sign

router = APIRouter(prefix="/reports", tags=["reports"])

Reader = Annotated[Caller, Depends(allow(RADIOLOGIST, AUDITOR, ADMIN))]
Radiologist = Annotated[Caller, Depends(allow(RADIOLOGIST))]
Format = Literal["json", "text", "sr", "pdf", "fhir"]
MEDIA_TYPES: dict[str, Format] = {
    "application/json": "json",
    "text/plain": "text",
    "application/dicom": "sr",
    "application/pdf": "pdf",
    "application/fhir+json": "fhir",
}
PRELIMINARY_BANNER = "PRELIMINARY - machine-generated draft, not verified by a radiologist"


@router.get(
    "/{report_id}",
    response_model=ReportPublic,
    responses={
        200: {
            "content": {media: {} for media in MEDIA_TYPES},
            "description": "The report in the format asked for",
        },
        404: {"model": ErrorDetail},
        406: {"model": ErrorDetail},
    },
)
def get_report(
    report_id: str,
    caller: Reader,
    session: SessionDep,
    settings: SettingsDep,
    format: Format | None = None,
    accept: Annotated[str | None, Header()] = None,
) -> Response:
    """One report version; ``?format=`` or the ``Accept`` header picks the rendering."""
    report = find_report(session, report_id)
    chosen = format or negotiate(accept)
    audit(session, caller, f"report.read.{chosen}", "report", report.id)
    return render(settings, report, chosen)


@router.post(
    "/{report_id}/sign",
    response_model=ReportPublic,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(404, 409, 422),
)
async def sign_report(
    report_id: str,
    signed: SignRequest,
    caller: Radiologist,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
) -> ReportPublic:
    """Sign the draft with the text given (edited or not): a new, final version.

    The SR is re-issued COMPLETE / VERIFIED with the caller as verifying observer, the FHIR
    report ``final``; the draft-to-signed difference is recorded and labelled on ``evaluate``.
    """
    return await run_in_threadpool(sign_draft, report_id, signed, caller, settings, dispatcher)


def sign_draft(
    report_id: str,
    signed: SignRequest,
    caller: Caller,
    settings: Settings,
    dispatcher: Dispatcher,
) -> ReportPublic:
    """Sign in a transaction of its own, then queue the sign-off's labelling; the API and the
    workspace both sign this way. Raises ``HTTPException`` (404, 409, 422) with nothing signed."""
    with session_scope(settings.sqlalchemy_url) as session:
        draft = find_report(session, report_id, lock=True)
        try:
            version, signoff = sign(
                session,
                settings,
                draft,
                signer=(caller.user_id, caller.name),
                findings=signed.findings,
                impression=signed.impression,
                signed_at=now(),
            )
        except NotSignableError as error:
            raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
        except (SignError, dicom.DicomError) as error:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
        audit(session, caller, "report.sign", "report", version.id, status.HTTP_201_CREATED)
        push = plan_push(session, settings, version)  # a study from the PACS gets it back
        public, signoff_id = report_public(version), signoff.id
    hand_over_evaluation(dispatcher, signoff_id)
    hand_over_pushes(dispatcher, [push.id] if push is not None else [])
    return public


def negotiate(accept: str | None) -> Format:
    """The first media type of ``Accept`` that we render; JSON for none or ``*/*``."""
    if not accept:
        return "json"
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        if media in MEDIA_TYPES:
            return MEDIA_TYPES[media]
        if media in ("*/*", "application/*"):
            return "json"
    raise HTTPException(
        status.HTTP_406_NOT_ACCEPTABLE,
        f"Reports come as {', '.join(MEDIA_TYPES)}; ask for one in Accept or use ?format=.",
    )


def render(settings: Settings, report: Report, chosen: Format) -> Response:
    filename = f"report-{report.id}"
    if chosen == "json":
        return JSONResponse(report_public(report).model_dump(mode="json"))
    if chosen == "text":
        return PlainTextResponse(report_text(report))
    if chosen == "sr":
        data = storage.read(settings.files_dir, report.files["sr"])
        return _download(data, "application/dicom", f"{filename}.sr.dcm")
    if chosen == "pdf":
        data = pdf_document(storage.read(settings.files_dir, report.files["pdf"]))
        return _download(data, "application/pdf", f"{filename}.pdf")
    data = storage.read(settings.files_dir, report.files["fhir"])
    return Response(data, media_type="application/fhir+json")


def report_text(report: Report) -> str:
    """Plain text with the report's status first: a printed draft must say it is one."""
    if report.status == "final":
        header = f"FINAL - signed by {report.signed_by} at {report.signed_at:%Y-%m-%d %H:%M} UTC"
    else:
        header = "\n".join([PRELIMINARY_BANNER, *trust_warnings(report.trust)])
    return f"{header}\n\nFINDINGS: {report.findings}\n\nIMPRESSION: {report.impression}\n"


def pdf_document(encapsulated: bytes) -> bytes:
    """The PDF inside an Encapsulated PDF instance, without the pad byte DICOM may add."""
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(encapsulated))
    document: bytes = ds.EncapsulatedDocument
    return document[: int(ds.get("EncapsulatedDocumentLength", len(document)))]


def _download(data: bytes, media_type: str, filename: str) -> Response:
    disposition = f'attachment; filename="{filename}"'
    return Response(data, media_type=media_type, headers={"Content-Disposition": disposition})


def find_report(session: Session, report_id: str, *, lock: bool = False) -> Report:
    report = session.get(Report, report_id, with_for_update=lock)
    if report is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No report with id {report_id!r}.")
    return report
