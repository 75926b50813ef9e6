"""The worklist: the studies a radiologist has to read, most urgent first.

Order: STAT studies, then drafts with a suspected critical finding, then the oldest first. A
suspected critical finding is one the draft's trust signals list: an observation of
``ECHOCXR_CRITICAL_FINDINGS`` whose calibrated probability crossed the checkpoint's threshold.
A draft without trust signals (or a signed version) suspects none: the labeler's reading of the
text is no calibrated signal, and the text of a confident wrong draft would rank it anyway.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.api.deps import MAX_OFFSET, Caller, SessionDep, allow, audit
from service.api.presenting import report_public, study_detail
from service.models import ADMIN, RADIOLOGIST
from service.schemas import JobPublic, WorklistItem
from workers.records import FAILED, QUEUED, RUNNING, STAT, Job, Report, Study

router = APIRouter(prefix="/worklist", tags=["worklist"])

Reader = Annotated[Caller, Depends(allow(RADIOLOGIST, ADMIN))]
ReadingState = Literal["drafting", "draft_ready", "signed", "failed"]
StateFilter = Literal["to_read", "drafting", "draft_ready", "signed", "failed", "all"]
TO_READ = ("drafting", "draft_ready", "failed")


@router.get("", response_model=list[WorklistItem])
def worklist(
    caller: Reader,
    session: SessionDep,
    state: StateFilter = "to_read",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[WorklistItem]:
    """Studies to read (``state=to_read``: drafting, draft ready or failed), or in one state."""
    rows = rows_in_order(session, state)
    audit(session, caller, "worklist.read", "study", None)
    return [
        WorklistItem(
            study=study_detail(study, with_identifiers=True),
            job=JobPublic.model_validate(job) if job else None,
            latest_report=report_public(report) if report else None,
        )
        for study, job, report in rows[offset : offset + limit]
    ]


def rows_in_order(
    session: Session, state: StateFilter
) -> list[tuple[Study, Job | None, Report | None]]:
    """The studies in ``state``, most urgent first: what the API and the workspace both list."""
    rows = []
    for study, job, report in studies_with_latest(session):
        reading = reading_state(job, report)
        if reading is None or (state != "all" and reading not in _wanted(state)):
            continue
        rows.append((urgency(study, report), study, job, report))
    rows.sort(key=lambda row: row[0])
    return [(study, job, report) for _, study, job, report in rows]


def _wanted(state: StateFilter) -> tuple[str, ...]:
    return TO_READ if state == "to_read" else (state,)


def studies_with_latest(session: Session) -> list[tuple[Study, Job | None, Report | None]]:
    """Every study with its newest job and newest report version."""
    newest_report = (
        select(Report.study_id, func.max(Report.version).label("version"))
        .group_by(Report.study_id)
        .subquery()
    )
    reports = {
        report.study_id: report
        for report in session.scalars(
            select(Report).join(
                newest_report,
                (Report.study_id == newest_report.c.study_id)
                & (Report.version == newest_report.c.version),
            )
        )
    }
    jobs: dict[str, Job] = {}
    for job in session.scalars(select(Job).order_by(Job.created_at)):
        jobs[job.study_id] = job  # the newest wins
    return [(s, jobs.get(s.id), reports.get(s.id)) for s in session.scalars(select(Study))]


def reading_state(job: Job | None, report: Report | None) -> ReadingState | None:
    """Where the study stands for its reader; None for a study with nothing to show."""
    if report is not None and report.status == "final":
        return "signed"
    if job is not None and job.state in (QUEUED, RUNNING):
        return "drafting"
    if report is not None:
        return "draft_ready"
    if job is not None and job.state == FAILED:
        return "failed"
    return None  # cancelled, or never drafted


def urgency(study: Study, report: Report | None) -> tuple[int, int, float]:
    """Sort key: STAT first, then a suspected critical finding, then the oldest."""
    return (
        0 if study.priority == STAT else 1,
        0 if critical_findings(report) else 1,
        study.created_at.timestamp(),
    )


def critical_findings(report: Report | None) -> list[str]:
    """The suspected critical findings of the study's newest version (none without trust)."""
    if report is None or report.trust is None:
        return []
    return list(report.trust["critical_findings"])
