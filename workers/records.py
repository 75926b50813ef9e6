"""The pipeline's records: studies, their files, drafting jobs, report versions, sign-offs and
pushes of reports to the PACS.

They live below ``service/`` because the workers write them (a job's state, the draft it made)
and nothing under ``workers/`` may import ``service/``. The service's own tables (users, API
keys, audit events) are in ``service.models``, on the same ``Base``, so one Alembic history
covers both. Pydantic schemas for the API are apart, in ``service.schemas``.

No identifying data goes into ``summary``; the Patient and Study identifiers a reader needs
(name, ID, accession…) are kept in ``identifiers`` and shown only to clinical roles.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator[datetime]):
    """A moment in UTC, aware on the way out: SQLite stores no zone and would give it back
    naive, PostgreSQL keeps it; both give the same value here."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.astimezone(UTC) if value is not None and value.tzinfo else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime}  # noqa: RUF012  (SQLAlchemy's class setting)


def new_id() -> str:
    return uuid.uuid4().hex


def now() -> datetime:
    return datetime.now(UTC)


ROUTINE, STAT = "routine", "stat"
PRIORITIES = (ROUTINE, STAT)
QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
JOB_STATES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)
DRAFT, SIGNED = "draft", "signed"
PENDING, SUPERSEDED = "pending", "superseded"
PUSH_STATES = (PENDING, DONE, FAILED, SUPERSEDED)


class Study(Base):
    """One study, known by its StudyInstanceUID; uploads of more instances join it."""

    __tablename__ = "studies"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    study_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    frontal_count: Mapped[int] = mapped_column(Integer)
    set_aside_count: Mapped[int] = mapped_column(Integer)
    # What was read, without identifying data: views, matrix sizes, spacing, reasons set aside.
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Patient and Study identifiers as the header gives them, for the people who read the study.
    identifiers: Mapped[dict[str, Any]] = mapped_column(JSON)
    # SHA-256 over the sorted hashes of its files: a study that grows gets a new value.
    content_sha256: Mapped[str] = mapped_column(String(64))
    priority: Mapped[str] = mapped_column(String(16), default=ROUTINE)
    # sent by a PACS or a modality (STOW-RS, C-STORE, a pull): its reports go back to the PACS
    return_to_pacs: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=now)
    updated_at: Mapped[datetime] = mapped_column(default=now)


class StudyFile(Base):
    """One file of a study, stored once by its SHA-256 (``workers.storage``)."""

    __tablename__ = "study_files"

    study_id: Mapped[str] = mapped_column(ForeignKey("studies.id"), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)


class Job(Base):
    """Drafting one study's content with one checkpoint, engine and options.

    ``draft_key`` is unique: the same content drafted the same way is one job, whatever the
    re-uploads and redeliveries.
    """

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    study_id: Mapped[str] = mapped_column(ForeignKey("studies.id"), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True, default=QUEUED)
    priority: Mapped[str] = mapped_column(String(16), default=ROUTINE)
    draft_key: Mapped[str] = mapped_column(String(64), unique=True)
    checkpoint_sha256: Mapped[str] = mapped_column(String(64))
    engine: Mapped[str] = mapped_column(String(64))
    engine_options: Mapped[dict[str, Any]] = mapped_column(JSON)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    report_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    timings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=now)
    # when the task was handed to the pool or the broker; None until then (a broker that was
    # down at upload time), and the service hands it again
    dispatched_at: Mapped[datetime | None] = mapped_column(nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # its draft's and that draft's signed version's way back to the PACS, oldest first
    pushes: Mapped[list[Push]] = relationship(
        order_by="Push.created_at", lazy="selectin", viewonly=True
    )


class Report(Base):
    """One version of a study's report: a machine draft, or a radiologist's signed text.

    Versions are never rewritten; signing adds a version that names the draft it is based on.
    ``files`` maps each rendering (json, sr, pdf, fhir) to its stored file's SHA-256.
    """

    __tablename__ = "reports"
    __table_args__ = (UniqueConstraint("study_id", "version"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    study_id: Mapped[str] = mapped_column(ForeignKey("studies.id"), index=True)
    # a draft belongs to exactly one job, so a redelivered job cannot add a second draft
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id"), unique=True, nullable=True)
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    based_on_id: Mapped[str | None] = mapped_column(ForeignKey("reports.id"), nullable=True)
    findings: Mapped[str] = mapped_column(Text)
    impression: Mapped[str] = mapped_column(Text)
    labels: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # a draft's trust signals as ``model.trust.Trust.to_json`` writes them; None for a signed
    # version, and for a draft from a checkpoint that ships no trust statistics
    trust: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    model_id: Mapped[str] = mapped_column(String(128))
    checkpoint_sha256: Mapped[str] = mapped_column(String(64))
    engine: Mapped[str] = mapped_column(String(64))
    engine_options: Mapped[dict[str, Any]] = mapped_column(JSON)
    signed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    signed_by_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    signed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    files: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=now)


class SignOff(Base):
    """What the radiologist changed between a draft and the version signed: the product's
    running quality signal. ``label_changes`` is filled on the ``evaluate`` queue."""

    __tablename__ = "signoffs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    draft_id: Mapped[str] = mapped_column(ForeignKey("reports.id"), index=True)
    signed_id: Mapped[str] = mapped_column(ForeignKey("reports.id"), unique=True)
    word_edit_distance: Mapped[int] = mapped_column(Integer)
    draft_words: Mapped[int] = mapped_column(Integer)
    signed_words: Mapped[int] = mapped_column(Integer)
    label_changes: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    evaluated_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=now)


class Push(Base):
    """Sending one report version's SR and Encapsulated PDF to the PACS by STOW-RS.

    Planned in the transaction that records the version, so a push is never forgotten; tried
    until ``Settings.push_attempts`` with a growing wait, then ``failed`` (the report stays here
    and is pushed again when the study is). ``job_id`` is the drafting job of the draft (or of
    the draft a signed version signs), so ``GET /v1/jobs/{id}`` shows how the push went.
    ``superseded``: not sent, a newer version of the study was pushed first.
    """

    __tablename__ = "pushes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    study_id: Mapped[str] = mapped_column(ForeignKey("studies.id"), index=True)
    report_id: Mapped[str] = mapped_column(ForeignKey("reports.id"), unique=True)
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id"), index=True, nullable=True)
    state: Mapped[str] = mapped_column(String(16), index=True, default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # the SOP Instance UIDs stored in the PACS, to withdraw when a newer draft replaces them
    sop_instance_uids: Mapped[list[str]] = mapped_column(JSON, default=list)
    withdrawn_at: Mapped[datetime | None] = mapped_column(nullable=True)
    next_attempt_at: Mapped[datetime] = mapped_column(default=now)
    created_at: Mapped[datetime] = mapped_column(default=now)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)


FOLDER, UPLOAD, PACS_QUERY = "folder", "upload", "pacs_query"
BATCH_SOURCES = (FOLDER, UPLOAD, PACS_QUERY)


class Batch(Base):
    """An archive drafted through the service: a server folder, an uploaded ZIP/TAR, or the
    studies a PACS query found; one ``BatchItem`` per study, drafted in chunks by every worker.

    Its drafts are files in the batch's folder (``workers.batches``), not worklist reports: a
    quality team's archive of thousands must not flood the radiologists' worklist. The counts
    are the items' states, counted when asked (a stored counter would be a row every worker
    fights over).
    """

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    source_kind: Mapped[str] = mapped_column(String(16))
    # what was asked for, in words: the folder, the upload's file name, the query
    source: Mapped[str] = mapped_column(String(500))
    # where the entries are read: the server folder, or the batch's own copy of an upload
    # (empty for a PACS query: each study is pulled when its chunk runs)
    folder: Mapped[str] = mapped_column(String(1000), default="")
    state: Mapped[str] = mapped_column(String(16), index=True, default=QUEUED)
    total: Mapped[int] = mapped_column(Integer)
    chunk_size: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(128))
    created_by_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=now)
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)


class BatchItem(Base):
    """One study of a batch: drafted at most once, whatever the redeliveries of its chunk (the
    claim takes only a queued item, or a running one whose worker died)."""

    __tablename__ = "batch_items"
    __table_args__ = (UniqueConstraint("batch_id", "number"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    chunk: Mapped[int] = mapped_column(Integer)
    # the entry's name in the folder, or the StudyInstanceUID a PACS query found
    entry: Mapped[str] = mapped_column(String(500))
    study_uid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    state: Mapped[str] = mapped_column(String(16), index=True, default=QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    findings: Mapped[str | None] = mapped_column(Text, nullable=True)
    impression: Mapped[str | None] = mapped_column(Text, nullable=True)
    labels: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # read, model and write seconds of this study (its share of the model's batch)
    timings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    dispatched_at: Mapped[datetime | None] = mapped_column(nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
