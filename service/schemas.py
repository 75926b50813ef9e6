"""Pydantic schemas of the API, kept apart from the SQLAlchemy tables (``workers.records``,
``service.models``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Priority = Literal["routine", "stat"]
JobState = Literal["queued", "running", "done", "failed", "cancelled"]


class JobBrief(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    state: JobState


class PushPublic(BaseModel):
    """One report version sent back to the PACS (STOW-RS): how it went, and why it failed."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    report_id: str
    state: Literal["pending", "done", "failed", "superseded"]
    attempts: int
    error: str | None
    next_attempt_at: datetime
    finished_at: datetime | None


class JobPublic(BaseModel):
    """A drafting job: its state, progress, the error that ended it, the report it made, and
    that report's way back to the PACS (its draft's push, then its signed version's)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    study_id: str
    state: JobState
    priority: Priority
    progress: float
    error: str | None
    report_id: str | None
    attempts: int
    timings: dict[str, float]
    engine: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    pushes: list[PushPublic] = Field(default_factory=list)


class StudyPublic(BaseModel):
    """What was read of a study: no names, birth dates or accession numbers."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    study_instance_uid: str
    frontal_count: int
    set_aside_count: int
    priority: Priority
    summary: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class StudyUploaded(StudyPublic):
    """An accepted upload: the study and its drafting job (the existing one when the same
    content was uploaded before)."""

    job: JobBrief


class StudyDetail(StudyPublic):
    """A study for the people who read it: with its Patient and Study identifiers."""

    identifiers: dict[str, str] | None = None


class ConsistencyFlagPublic(BaseModel):
    """A contradiction the model found in its own draft, about one observation."""

    observation: str
    kind: str = Field(description="Which check found it")
    detail: str = Field(description="The contradiction in words")


class ReportPublic(BaseModel):
    """One version of a study's report, with what wrote it (and who signed it), and a draft's
    trust signals: each null for a signed version, and for a draft whose checkpoint ships no
    trust statistics."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    study_id: str
    version: int
    kind: Literal["draft", "signed"]
    status: Literal["preliminary", "final"]
    based_on_id: str | None
    findings: str
    impression: str
    labels: dict[str, int | None] | None
    model_id: str
    checkpoint_sha256: str
    engine: str
    engine_options: dict[str, Any]
    signed_by: str | None
    signed_at: datetime | None
    created_at: datetime
    formats: list[str] = Field(description="Renderings: json, text, sr, pdf, fhir")
    finding_probabilities: dict[str, float] | None = Field(
        default=None, description="Calibrated probability of each observation"
    )
    out_of_distribution: bool | None = Field(
        default=None,
        description="The image lies outside the model's training distribution: not reliable",
    )
    ood_score: float | None = Field(default=None, description="Distance from the training data")
    ood_threshold: float | None = Field(default=None, description="Above it: out of distribution")
    consistency_flags: list[ConsistencyFlagPublic] | None = None
    critical_findings: list[str] | None = Field(
        default=None, description="Suspected critical findings (ECHOCXR_CRITICAL_FINDINGS)"
    )


class SignRequest(BaseModel):
    """The text the radiologist signs: the draft as edited, or as it was."""

    findings: str = Field(max_length=20_000)
    impression: str = Field(max_length=20_000)


class AskRequest(BaseModel):
    question: str = Field(min_length=1, max_length=2_000)
    history: list[tuple[str, str]] = Field(default_factory=list, max_length=20)


class AskAnswer(BaseModel):
    answer: str
    model: str = Field(description="The model that answered (the assistant, not the drafter)")


class WorklistItem(BaseModel):
    """A study to read: priority, where its draft stands, and who it is."""

    study: StudyDetail
    job: JobPublic | None
    latest_report: ReportPublic | None


class Health(BaseModel):
    status: str
    database: str


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, str]


class PacsNotification(BaseModel):
    """A study the PACS holds, complete enough to draft (its stable-study event)."""

    study_instance_uid: str = Field(pattern=r"^[0-9]+(\.[0-9]+)*$", max_length=64)
    priority: Priority = "routine"


class PacsNotified(BaseModel):
    study_instance_uid: str
    state: Literal["queued"]


class ErrorDetail(BaseModel):
    detail: str


BatchState = Literal["queued", "running", "done", "failed", "cancelled"]


class BatchPublic(BaseModel):
    """An archive drafted through the service: where it came from and how far it got."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    source_kind: Literal["folder", "upload", "pacs_query"]
    source: str
    state: BatchState
    total: int
    chunk_size: int
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    counts: dict[str, int] = Field(
        default_factory=dict, description="Studies by state: queued, running, done, failed…"
    )


class BatchItemPublic(BaseModel):
    """One study of a batch: its outcome and, once drafted, the draft's text."""

    model_config = ConfigDict(from_attributes=True)

    number: int
    entry: str
    study_uid: str | None
    state: JobState
    attempts: int
    detail: str | None
    seconds: float | None
    findings: str | None
    impression: str | None


class BatchDetail(BatchPublic):
    """The batch, failures by reason, the drafts' labels (per observation, how many drafts call
    it positive, uncertain or negative), where the time went (seconds summed over its studies:
    read, model, write), and a page of its studies."""

    failures: dict[str, int]
    labels: dict[str, dict[str, int]]
    seconds: dict[str, float]
    items: list[BatchItemPublic]
