"""Studies: upload (a DICOM file or a ZIP/TAR of one study) to start a draft, list, fetch, the
report versions, and questions to the assistant."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, UploadFile, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select
from sqlalchemy.orm import Session

import dicom
from service.api.deps import (
    MAX_OFFSET,
    Caller,
    DispatcherDep,
    ProfileDep,
    SessionDep,
    SettingsDep,
    allow,
    audit,
    error_responses,
)
from service.api.presenting import report_public, study_detail
from service.dispatch import AssistantBusyError, Dispatcher, hand_over
from service.models import ADMIN, AUDITOR, RADIOLOGIST, UPLOADER
from service.schemas import (
    AskAnswer,
    AskRequest,
    JobBrief,
    Priority,
    ReportPublic,
    StudyDetail,
    StudyPublic,
    StudyUploaded,
)
from workers.config import Settings
from workers.db import session_scope
from workers.generators import DraftProfile
from workers.ingest import Ingested, ingest_in_transaction
from workers.records import Report, Study

router = APIRouter(prefix="/studies", tags=["studies"])

Uploader = Annotated[Caller, Depends(allow(UPLOADER, RADIOLOGIST, ADMIN))]
Reader = Annotated[Caller, Depends(allow(RADIOLOGIST, AUDITOR, ADMIN))]
AnyRole = Annotated[Caller, Depends(allow(UPLOADER, RADIOLOGIST, AUDITOR, ADMIN))]
Radiologist = Annotated[Caller, Depends(allow(RADIOLOGIST))]


@router.post(
    "",
    response_model=StudyUploaded,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(413, 422),
)
async def upload_study(
    request: Request,
    file: UploadFile,
    caller: Uploader,
    settings: SettingsDep,
    profile: ProfileDep,
    dispatcher: DispatcherDep,
    priority: Priority = "routine",
) -> StudyUploaded:
    """Store a study and start its draft; uploading the same study again drafts nothing new.

    The body's size is limited while it streams (``ECHOCXR_MAX_UPLOAD_MB``); the study is read
    before anything is stored, and a refused upload leaves nothing behind.
    """
    data = await file.read()
    slots = request.app.state.ingest_slots
    return await store_and_draft(slots, data, priority, caller, settings, profile, dispatcher)


async def store_and_draft(
    slots: asyncio.Semaphore,
    data: bytes,
    priority: str,
    caller: Caller,
    settings: Settings,
    profile: DraftProfile,
    dispatcher: Dispatcher,
) -> StudyUploaded:
    """Ingest an upload and hand its new job over; the API and the workspace both upload this
    way. Raises ``HTTPException`` (422) for a study that cannot be read, with nothing stored.
    ``slots`` (the app's) lets a few uploads be read and recorded at once."""
    try:
        async with slots:  # the rest wait here, holding no thread
            ingested = await run_in_threadpool(_ingest, settings, profile, data, priority, caller)
    except dicom.DicomError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    if ingested.new_job:
        await run_in_threadpool(hand_over, dispatcher, settings, ingested.job.id, priority)
    return StudyUploaded(
        **StudyPublic.model_validate(ingested.study).model_dump(),
        job=JobBrief.model_validate(ingested.job),
    )


def _ingest(
    settings: Settings, profile: DraftProfile, data: bytes, priority: str, caller: Caller
) -> Ingested:
    def record(session: Session, ingested: Ingested) -> None:
        audit(session, caller, "study.upload", "study", ingested.study.id, 201)

    return ingest_in_transaction(settings, profile, data, priority, record=record)


@router.get("", response_model=list[StudyPublic])
def list_studies(
    caller: Reader,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[StudyPublic]:
    query = select(Study).order_by(Study.created_at.desc()).limit(limit).offset(offset)
    studies = list(session.scalars(query))
    audit(session, caller, "study.list", "study", None)
    return [StudyPublic.model_validate(study) for study in studies]


@router.get("/{study_id}", response_model=StudyDetail, responses=error_responses(404))
def get_study(study_id: str, caller: AnyRole, session: SessionDep) -> StudyDetail:
    """The study; its Patient and Study identifiers for the roles that read studies."""
    study = find_study(session, study_id)
    audit(session, caller, "study.read", "study", study.id)
    return study_detail(study, with_identifiers=caller.role != UPLOADER)


@router.get(
    "/{study_id}/reports", response_model=list[ReportPublic], responses=error_responses(404)
)
def list_reports(study_id: str, caller: Reader, session: SessionDep) -> list[ReportPublic]:
    """Every version of the study's report, newest first."""
    study = find_study(session, study_id)
    query = select(Report).where(Report.study_id == study.id).order_by(Report.version.desc())
    reports = list(session.scalars(query))
    audit(session, caller, "report.list", "study", study.id)
    return [report_public(report) for report in reports]


@router.post(
    "/{study_id}/ask",
    response_model=AskAnswer,
    responses=error_responses(404, 422, 504),
)
async def ask(
    study_id: str,
    question: AskRequest,
    caller: Radiologist,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
) -> AskAnswer:
    """The assistant's answer to a question about the study (the stage-1 model, on the
    ``assistant`` queue); earlier turns go in ``history`` as [question, answer] pairs."""
    return await run_in_threadpool(ask_assistant, study_id, question, caller, settings, dispatcher)


def ask_assistant(
    study_id: str,
    question: AskRequest,
    caller: Caller,
    settings: Settings,
    dispatcher: Dispatcher,
) -> AskAnswer:
    """Record the question and wait for the answer; the API and the workspace both ask this way.
    Raises ``HTTPException`` (404, 422, 504)."""
    with session_scope(settings.sqlalchemy_url) as session:
        study = find_study(session, study_id)
        audit(session, caller, "study.ask", "study", study.id)
    try:
        answer = dispatcher.ask(study.id, question.question, list(question.history))
    except AssistantBusyError:
        raise HTTPException(
            status.HTTP_504_GATEWAY_TIMEOUT,
            f"The assistant did not answer within {settings.ask_timeout_s:.0f} s; the workers "
            "are busy or down, try again.",
        ) from None
    if "error" in answer:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, answer["error"])
    return AskAnswer(answer=answer["answer"], model=answer["model"])


def find_study(session: Session, study_id: str) -> Study:
    study = session.get(Study, study_id)
    if study is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No study with id {study_id!r}.")
    return study
