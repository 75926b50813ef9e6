"""Jobs: where a draft stands (queued, running, done, failed, cancelled), and cancelling one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from sqlalchemy.orm import Session

from service.api.deps import Caller, SessionDep, allow, audit, error_responses
from service.models import ADMIN, AUDITOR, RADIOLOGIST, UPLOADER
from service.schemas import JobPublic
from workers.jobs import cancel_job
from workers.records import Job

router = APIRouter(prefix="/jobs", tags=["jobs"])

AnyRole = Annotated[Caller, Depends(allow(UPLOADER, RADIOLOGIST, AUDITOR, ADMIN))]
Canceller = Annotated[Caller, Depends(allow(UPLOADER, RADIOLOGIST, ADMIN))]


@router.get("/{job_id}", response_model=JobPublic, responses=error_responses(404))
def get_job(job_id: str, caller: AnyRole, session: SessionDep) -> JobPublic:
    job = find_job(session, job_id)
    audit(session, caller, "job.read", "job", job.id)
    return JobPublic.model_validate(job)


@router.post(
    "/{job_id}/cancel",
    response_model=JobPublic,
    responses=error_responses(404, 409),
)
def cancel(job_id: str, caller: Canceller, session: SessionDep) -> JobPublic:
    """Cancel a queued or running draft (a running one finishes but its draft is discarded)."""
    job = find_job(session, job_id)
    if not cancel_job(session, job):
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"The job is {job.state}; only queued or running jobs cancel."
        )
    audit(session, caller, "job.cancel", "job", job.id)
    return JobPublic.model_validate(job)


def find_job(session: Session, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No job with id {job_id!r}.")
    return job
