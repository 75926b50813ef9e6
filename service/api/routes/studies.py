"""Studies: upload (a DICOM file or a ZIP/TAR of one study), list, fetch."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, UploadFile, status
from fastapi.concurrency import run_in_threadpool

import dicom
from service import crud
from service.api.deps import CallerDep, SessionDep, SettingsDep
from service.ingest import ingest_upload
from service.schemas import ErrorDetail, StudyPublic

router = APIRouter(prefix="/studies", tags=["studies"], dependencies=[CallerDep])


@router.post(
    "",
    response_model=StudyPublic,
    status_code=status.HTTP_201_CREATED,
    responses={413: {"model": ErrorDetail}, 422: {"model": ErrorDetail}},
)
async def upload_study(file: UploadFile, session: SessionDep, settings: SettingsDep) -> StudyPublic:
    limit = settings.max_upload_mb * 1024 * 1024
    payload = await file.read(limit + 1)
    if len(payload) > limit:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"Upload exceeds {settings.max_upload_mb} MB (ECHOCXR_MAX_UPLOAD_MB); "
            "send the study's instances one archive per study.",
        )
    try:
        record = await run_in_threadpool(
            ingest_upload,
            session,
            studies_dir=settings.studies_dir,
            payload=payload,
            filename=file.filename or "upload.dcm",
        )
    except dicom.DicomError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    return StudyPublic.model_validate(record)


@router.get("", response_model=list[StudyPublic])
def list_studies(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[StudyPublic]:
    records = crud.list_studies(session, limit=limit, offset=offset)
    return [StudyPublic.model_validate(r) for r in records]


@router.get("/{study_id}", response_model=StudyPublic, responses={404: {"model": ErrorDetail}})
def get_study(study_id: str, session: SessionDep) -> StudyPublic:
    record = crud.get_study(session, record_id=study_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No study with id {study_id!r}.")
    return StudyPublic.model_validate(record)
