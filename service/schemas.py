"""Pydantic schemas of the API, kept apart from the SQLAlchemy tables in ``service.models``."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class StudyPublic(BaseModel):
    """What the API returns about an ingested study: no names, birth dates or accession numbers."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    study_instance_uid: str
    frontal_count: int
    set_aside_count: int
    summary: dict[str, object]
    created_at: datetime


class Health(BaseModel):
    status: str
    database: str


class ErrorDetail(BaseModel):
    detail: str
