"""The reading view: the image beside the draft, the labeler's findings in each sentence, the
trust signals and warnings, editing and signing, the assistant; and what the view fetches (the
windowed image, the draft's progress, the report files)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

import dicom
from service.api.deps import DispatcherDep, SessionDep, SettingsDep, audit
from service.api.routes.reports import Format, find_report, render, sign_draft
from service.api.routes.studies import ask_assistant, find_study
from service.api.routes.worklist import reading_state
from service.models import ADMIN, AUDITOR, RADIOLOGIST
from service.schemas import AskAnswer, AskRequest, SignRequest
from service.web import images
from service.web.pages import page
from service.web.reading import alerts, mark_sentences, trust_signals
from service.web.session import COOKIE_PATH, CsrfChecked, Viewer, page_for
from workers import storage
from workers.config import Settings
from workers.records import DRAFT, Job, Report, Study

router = APIRouter(include_in_schema=False)

Reader = Annotated[Viewer, Depends(page_for(RADIOLOGIST, AUDITOR, ADMIN))]
Radiologist = Annotated[Viewer, Depends(page_for(RADIOLOGIST))]
TEXT_LIMIT = 20_000
WINDOW_LIMIT = 1e7  # beyond any modality value a radiograph stores


@router.get("/studies/{study_id}")
def review(
    request: Request,
    study_id: str,
    viewer: Reader,
    session: SessionDep,
    settings: SettingsDep,
    version: int | None = None,
) -> Response:
    """The study with its newest report version (or ``version``), editable by radiologists."""
    study = find_study(session, study_id)
    audit(session, viewer, "web.study", "study", study.id)
    return review_page(request, session, settings, viewer, study, version)


def review_page(
    request: Request,
    session: Session,
    settings: Settings,
    viewer: Viewer,
    study: Study,
    version: int | None,
    *,
    edited: dict[str, str] | None = None,
    error: str = "",
    status_code: int = status.HTTP_200_OK,
) -> Response:
    """The page for ``study``; ``edited`` keeps the text of a signing that was refused."""
    versions = list(
        session.scalars(
            select(Report).where(Report.study_id == study.id).order_by(Report.version.desc())
        )
    )
    shown = next((r for r in versions if r.version == version), versions[0] if versions else None)
    job = session.scalar(
        select(Job).where(Job.study_id == study.id).order_by(Job.created_at.desc())
    )
    newest = versions[0] if versions else None
    signable = bool(
        shown is not None and shown is newest and shown.kind == DRAFT and viewer.role == RADIOLOGIST
    )
    return page(
        request,
        "review.html",
        viewer,
        title=f"Study {study.identifiers.get('AccessionNumber') or study.id[:8]}",
        status_code=status_code,
        study=study,
        job=job,
        reading=reading_state(job, newest),
        versions=versions,
        shown=shown,
        marks=mark_sentences(shown.findings, shown.impression) if shown else None,
        alerts=alerts(shown) if shown else [],
        signals=trust_signals(shown) if shown else {},
        signable=signable,
        edited=edited or _texts(shown),
        error=error,
        image=_image_context(settings, study),
    )


def _texts(report: Report | None) -> dict[str, str]:
    return {"findings": report.findings, "impression": report.impression} if report else {}


def _image_context(settings: Settings, study: Study) -> dict[str, Any]:
    """What the viewer starts from: the window a drag starts at and the file's inversion, or
    why the image cannot be shown."""
    folder = storage.study_folder(settings.studies_dir, study.id)
    try:
        frame = images.load_frame(folder, study.content_sha256)
    except (dicom.DicomError, FileNotFoundError) as error:
        return {"error": str(error)}
    center, width = frame.window
    low, high = frame.value_range
    return {
        "center": center,
        "width": width,
        "low": low,
        "high": high,
        "monochrome1": frame.inverted,
        "photometric": str(frame.header.get("PhotometricInterpretation", "")),
    }


@router.get("/studies/{study_id}/image")
def image(
    study_id: str,
    viewer: Reader,
    session: SessionDep,
    settings: SettingsDep,
    wc: Annotated[
        float | None, Query(allow_inf_nan=False, ge=-WINDOW_LIMIT, le=WINDOW_LIMIT)
    ] = None,
    ww: Annotated[float | None, Query(allow_inf_nan=False, ge=1, le=WINDOW_LIMIT)] = None,
    invert: bool = False,
    side: Annotated[int, Query(ge=64, le=images.MAX_SIDE)] = 1024,
) -> Response:
    """The frontal image as a PNG at window centre ``wc`` and width ``ww`` (the file's own VOI
    when both are absent), inverted on request, at most ``side`` pixels long."""
    if (wc is None) != (ww is None):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "Give both wc and ww, or neither."
        )
    study = find_study(session, study_id)
    audit(session, viewer, "study.image", "study", study.id)
    folder = storage.study_folder(settings.studies_dir, study.id)
    window = (wc, ww) if wc is not None and ww is not None else None
    try:
        data = images.render_png(folder, study.content_sha256, window, invert, side)
    except (dicom.DicomError, FileNotFoundError) as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=600"})


@router.get("/studies/{study_id}/state")
def draft_state(study_id: str, viewer: Reader, session: SessionDep) -> dict[str, Any]:
    """Where the study's draft stands, for the page that waits for it (not a view: no audit)."""
    study = find_study(session, study_id)
    job = session.scalar(
        select(Job).where(Job.study_id == study.id).order_by(Job.created_at.desc())
    )
    report = session.scalar(
        select(Report).where(Report.study_id == study.id).order_by(Report.version.desc())
    )
    return {
        "reading": reading_state(job, report),
        "progress": job.progress if job else 0.0,
        "error": job.error if job else None,
    }


@router.post("/studies/{study_id}/ask")
async def ask(
    study_id: str,
    question: AskRequest,
    viewer: Radiologist,
    _: CsrfChecked,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
) -> AskAnswer:
    """The assistant's answer, for the side panel."""
    return await run_in_threadpool(ask_assistant, study_id, question, viewer, settings, dispatcher)


@router.post("/reports/{report_id}/sign")
async def sign(
    request: Request,
    report_id: str,
    viewer: Radiologist,
    _: CsrfChecked,
    settings: SettingsDep,
    session: SessionDep,
    dispatcher: DispatcherDep,
    findings: Annotated[str, Form(max_length=TEXT_LIMIT)] = "",
    impression: Annotated[str, Form(max_length=TEXT_LIMIT)] = "",
    alerts_read: Annotated[bool, Form()] = False,
) -> Response:
    """Sign the text as edited; a refusal shows the page again with the text kept."""
    draft = find_report(session, report_id)
    study = find_study(session, draft.study_id)
    try:
        if alerts(draft) and not alerts_read:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                "Tick “I have read the warnings” to sign: this draft carries warnings.",
            )
        signed_text = SignRequest(findings=findings, impression=impression)
        await run_in_threadpool(sign_draft, report_id, signed_text, viewer, settings, dispatcher)
    except HTTPException as refused:
        edited = {"findings": findings, "impression": impression}
        return review_page(
            request,
            session,
            settings,
            viewer,
            study,
            None,
            edited=edited,
            error=str(refused.detail),
            status_code=refused.status_code,
        )
    return RedirectResponse(f"{COOKIE_PATH}/studies/{study.id}?signed=1", status.HTTP_303_SEE_OTHER)


@router.get("/reports/{report_id}/download")
def download(
    report_id: str,
    viewer: Reader,
    session: SessionDep,
    settings: SettingsDep,
    format: Format = "pdf",
) -> Response:
    """One rendering of a report version (SR, PDF, FHIR, text or JSON), as the API gives it."""
    report = find_report(session, report_id)
    audit(session, viewer, f"report.read.{format}", "report", report.id)
    return render(settings, report, format)
