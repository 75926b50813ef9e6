"""Queries, as keyword-only functions that take a session: the API, workers and the embedded
mode call the same ones."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.models import StudyRecord


def create_study(
    session: Session,
    *,
    record_id: str,
    study_instance_uid: str,
    frontal_count: int,
    set_aside_count: int,
    summary: dict[str, object],
) -> StudyRecord:
    record = StudyRecord(
        id=record_id,
        study_instance_uid=study_instance_uid,
        frontal_count=frontal_count,
        set_aside_count=set_aside_count,
        summary=summary,
    )
    session.add(record)
    session.flush()
    return record


def get_study(session: Session, *, record_id: str) -> StudyRecord | None:
    return session.get(StudyRecord, record_id)


def list_studies(session: Session, *, limit: int, offset: int) -> list[StudyRecord]:
    query = select(StudyRecord).order_by(StudyRecord.created_at.desc()).limit(limit).offset(offset)
    return list(session.scalars(query))
