"""The PACS tells us a study is complete (Orthanc's stable-study event,
``service/pacs/orthanc.lua``): the study is pulled from it by WADO-RS on the ``pacs`` queue,
drafted, and the draft pushed back."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.concurrency import run_in_threadpool

from service.api.deps import (
    Caller,
    DispatcherDep,
    SettingsDep,
    allow,
    audit,
    error_responses,
)
from service.models import ADMIN, UPLOADER
from service.schemas import PacsNotification, PacsNotified
from workers.db import session_scope
from workers.pacs import NOT_CONFIGURED

router = APIRouter(prefix="/pacs", tags=["pacs"])

Notifier = Annotated[Caller, Depends(allow(UPLOADER, ADMIN))]


@router.post(
    "/notify",
    response_model=PacsNotified,
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(409, 503),
)
async def notify(
    notification: PacsNotification,
    caller: Notifier,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
) -> PacsNotified:
    """Pull the study from the PACS and draft it; a study already drafted with the same content
    is not drafted again, and one that grew is."""
    if settings.pacs_dicomweb_url is None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"Cannot pull: {NOT_CONFIGURED}.")
    uid = notification.study_instance_uid
    with session_scope(settings.sqlalchemy_url) as session:
        audit(session, caller, "pacs.notify", "study_instance_uid", uid, status.HTTP_202_ACCEPTED)
    try:
        await run_in_threadpool(dispatcher.pull, uid, notification.priority)
    except Exception as error:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"The pull could not be queued ({type(error).__name__}); the broker is down, try "
            "again (a poll of the PACS also finds the study).",
        ) from None
    return PacsNotified(study_instance_uid=uid, state="queued")
