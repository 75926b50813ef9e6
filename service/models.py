"""SQLAlchemy tables. Pydantic schemas for the API live apart, in ``service.schemas``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import JSON, DateTime, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


def _new_id() -> str:
    return uuid.uuid4().hex


def _now() -> datetime:
    return datetime.now(UTC)


class StudyRecord(Base):
    """One ingested study. The DICOM files sit under ``Settings.studies_dir / id``."""

    __tablename__ = "studies"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=_new_id)
    study_instance_uid: Mapped[str] = mapped_column(String(64), index=True)
    frontal_count: Mapped[int] = mapped_column(Integer)
    set_aside_count: Mapped[int] = mapped_column(Integer)
    # What was read, without identifying data: views, matrix sizes, spacing, reasons set aside.
    summary: Mapped[dict[str, object]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
