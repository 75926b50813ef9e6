"""The work behind every task, as plain functions taking ids: what a Celery worker and the API's
embedded pool both run.

``run_draft`` is idempotent under redelivery (``acks_late``): a job already done, failed or
cancelled is left as it is; a job whose worker died mid-draft is drafted again, and the unique
``reports.job_id`` lets only one draft in. A job is tried at most ``Settings.draft_attempts``
times, so a study that kills its worker (out of memory) cannot loop forever.

Logs name jobs and error types, never error messages or headers: those may hold patient data.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from workers import storage
from workers.config import Settings
from workers.db import session_scope
from workers.drafting import pick_image, write_draft
from workers.generators import (
    DraftProfile,
    assistant_generator,
    report_generator,
    resolve_profile,
)
from workers.pacs import plan_push
from workers.records import (
    CANCELLED,
    DONE,
    DRAFT,
    FAILED,
    QUEUED,
    RUNNING,
    Job,
    Report,
    SignOff,
    now,
)

if TYPE_CHECKING:
    import numpy as np

    import dicom
    from model.report import Report as DraftedReport

logger = logging.getLogger(__name__)

UNEXPECTED = (
    "drafting failed unexpectedly ({kind}); the job can be retried by uploading the study again, "
    "and the service log names the error"
)
WORKER_DIED = (
    "the draft was started {attempts} times and its worker died each time (out of memory, or a "
    "decoder crashed); check the study with `echocxr ingest`"
)
OUT_OF_DISTRIBUTION = (
    "the image lies outside the model's training distribution (score {score:.2f} > threshold "
    "{threshold:.2f}); no draft was written. Read the study unaided, or set "
    "ECHOCXR_REFUSE_OOD=false to have such drafts written and marked not reliable"
)
PROFILE_MISMATCH = (
    "this worker drafts with {worker} but the job was queued for {job}: give the API and the "
    "workers the same ECHOCXR_CHECKPOINT, ECHOCXR_ENGINE and ECHOCXR_ENGINE_OPTIONS"
)


@dataclass(frozen=True)
class Claim:
    """A job taken for drafting: which study, and when the taking began."""

    job_id: str
    study_id: str
    queued_s: float


def run_draft(settings: Settings, job_id: str) -> str | None:
    """Draft the job's study and record the report; returns the report id, or None when the job
    was not drafted (unknown, cancelled, failed, or already drafted by another delivery)."""
    return run_drafts(settings, [job_id])[job_id]


def run_drafts(settings: Settings, job_ids: list[str]) -> dict[str, str | None]:
    """Draft several jobs' studies through one pass of the model, each job recorded (or failed)
    on its own; the report id of each job, None where it was not drafted.

    The embedded pool hands over up to ``Settings.draft_batch`` queued jobs at once: a batch of
    four costs the model about half of four single drafts on a CPU
    (benchmarks/results/engines.md), and a bad study fails only its own job.
    """
    drafted: dict[str, str | None] = dict.fromkeys(job_ids)
    claims = [claim for claim in map(lambda j: claim_job(settings, j), job_ids) if claim]
    if not claims:
        return drafted
    try:
        profile = resolve_profile(settings)
        generator = report_generator(profile, settings)
    except Exception as error:
        for claim in claims:
            fail_job(settings, claim.job_id, failure_message(error))
        return drafted
    prepared = [
        p for p in (prepare(settings, c, profile, generator.image_size) for c in claims) if p
    ]
    if not prepared:
        return drafted
    try:
        start = time.perf_counter()
        reports = generator.generate([item.pixels for item in prepared])
        model_share = (time.perf_counter() - start) / len(prepared)
    except Exception as error:
        for item in prepared:
            fail_job(settings, item.claim.job_id, failure_message(error))
        return drafted
    for item, report in zip(prepared, reports, strict=True):
        drafted[item.claim.job_id] = record_draft(settings, item, report, model_share)
    return drafted


@dataclass(frozen=True)
class Prepared:
    """A claimed job whose study was read: its headers and the model's input."""

    claim: Claim
    study: dicom.Study
    pixels: np.ndarray
    read_s: float


def prepare(
    settings: Settings, claim: Claim, profile: DraftProfile, image_size: int
) -> Prepared | None:
    """Read the job's study and make the model input; a study that cannot be read fails its
    own job (None)."""
    import dicom

    start = time.perf_counter()
    try:
        check_profile(settings, claim.job_id, profile)
        study = dicom.read_study(storage.study_folder(settings.studies_dir, claim.study_id))
        pixels = dicom.to_model_input(pick_image(study), image_size)
    except Exception as error:
        fail_job(settings, claim.job_id, failure_message(error))
        return None
    set_progress(settings, claim.job_id, 0.3)
    return Prepared(claim, study.without_pixels(), pixels, time.perf_counter() - start)


def record_draft(
    settings: Settings, item: Prepared, report: DraftedReport, draft_s: float
) -> str | None:
    """Store the draft's renderings and record it as the study's next version; with
    ``Settings.refuse_ood``, fail the job of an out-of-distribution image instead."""
    start = time.perf_counter()
    trust = report.trust
    if settings.refuse_ood and trust is not None and trust.out_of_distribution:
        message = OUT_OF_DISTRIBUTION.format(score=trust.ood_score, threshold=trust.ood_threshold)
        fail_job(settings, item.claim.job_id, message)
        return None
    try:
        files = store_renderings(
            settings, lambda folder: write_draft(item.study, report, folder).files
        )
    except Exception as error:
        fail_job(settings, item.claim.job_id, failure_message(error))
        return None
    timings = {
        "queued_s": item.claim.queued_s,
        "read_s": item.read_s,
        # this study's share of the batch: the model's decoding (model_s) plus labelling
        "draft_s": draft_s,
        "model_s": float(report.timings.get("decode_s", 0.0)) / report.timings.get("reports", 1),
        "batch": float(report.timings.get("reports", 1)),
        "write_s": time.perf_counter() - start,
    }
    return finish_job(settings, item.claim, report, files, timings)


def claim_job(settings: Settings, job_id: str) -> Claim | None:
    """Mark the job running, or say why it is not to be drafted (``None``)."""
    with session_scope(settings.sqlalchemy_url) as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None:
            logger.warning("job %s: no such job; the task is dropped", job_id)
            return None
        if job.state not in (QUEUED, RUNNING):
            return None  # done, failed or cancelled: a redelivery has nothing to do
        if job.attempts >= settings.draft_attempts:
            _mark_failed(job, WORKER_DIED.format(attempts=job.attempts))
            logger.error("job %s: failed after %d attempts", job_id, job.attempts)
            return None
        job.state, job.attempts, job.progress = RUNNING, job.attempts + 1, 0.1
        job.started_at = now()
        queued = (job.started_at - job.created_at).total_seconds()
        return Claim(job.id, job.study_id, queued)


def check_profile(settings: Settings, job_id: str, profile: DraftProfile) -> None:
    """A job is drafted only by the checkpoint, engine and options it was keyed with."""
    with session_scope(settings.sqlalchemy_url) as session:
        job = session.get(Job, job_id)
        assert job is not None
        wanted = (job.checkpoint_sha256, job.engine, job.engine_options)
        if wanted != (profile.weights_sha256, profile.engine, profile.options):
            raise ProfileMismatchError(
                PROFILE_MISMATCH.format(
                    worker=f"{profile.engine} on weights {profile.weights_sha256[:12]}",
                    job=f"{job.engine} on weights {job.checkpoint_sha256[:12]}",
                )
            )


class ProfileMismatchError(RuntimeError):
    """The worker's drafting settings differ from those the job was queued with."""


def store_renderings(
    settings: Settings, render: Callable[[Path], dict[str, Path]]
) -> dict[str, str]:
    """Render a report's files (JSON, SR, PDF, FHIR) into a scratch folder with ``render`` and
    store them by content; returns their hashes by kind."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.data_dir, prefix=".rendering-") as folder:
        written = render(Path(folder))
        return {
            kind: storage.put(settings.files_dir, p.read_bytes())[0] for kind, p in written.items()
        }


def finish_job(
    settings: Settings,
    claim: Claim,
    report: DraftedReport,
    files: dict[str, str],
    timings: dict[str, float],
) -> str | None:
    """Record the draft as the study's next version and the job as done, in one transaction,
    with its push to the PACS when the study came from one (``workers.pacs``).

    Another delivery of the same job may have finished first (its worker was only slow), or the
    job was cancelled meanwhile: then nothing is added.
    """
    for _ in range(3):  # two drafts of one study may race for the next version number
        try:
            with session_scope(settings.sqlalchemy_url) as session:
                job = session.get(Job, claim.job_id, with_for_update=True)
                if job is None or job.state != RUNNING or job.report_id is not None:
                    return job.report_id if job is not None else None
                record = _draft_record(session, claim, report, files)
                plan_push(session, settings, record)
                job.report_id, job.state, job.progress = record.id, DONE, 1.0
                job.finished_at = now()
                job.timings = {**timings, "total_s": _elapsed(job)}
                return record.id
        except IntegrityError:
            continue
    fail_job(settings, claim.job_id, "the draft could not be recorded; upload the study again")
    return None


def _draft_record(
    session: Session, claim: Claim, report: DraftedReport, files: dict[str, str]
) -> Report:
    record = Report(
        study_id=claim.study_id,
        job_id=claim.job_id,
        version=next_version(session, claim.study_id),
        kind=DRAFT,
        status="preliminary",
        findings=report.findings,
        impression=report.impression,
        labels=report.labels,
        trust=None if report.trust is None else report.trust.to_json(),
        model_id=report.model_id,
        checkpoint_sha256=report.checkpoint_sha256,
        engine=report.engine,
        engine_options=report.engine_options,
        files=files,
    )
    session.add(record)
    session.flush()
    return record


def next_version(session: Session, study_id: str) -> int:
    latest = session.scalar(select(func.max(Report.version)).where(Report.study_id == study_id))
    return (latest or 0) + 1


def failure_message(error: Exception) -> str:
    """What the job says went wrong: the library's own words for bad input (they name the tag or
    the setting and the fix), a generic sentence for anything else."""
    import dicom
    from model.checkpoint import CheckpointError
    from model.decoding import EngineError
    from model.trust_stats import TrustStatisticsError

    known = dicom.DicomError | CheckpointError | EngineError | TrustStatisticsError
    if isinstance(error, known | ProfileMismatchError):
        return str(error)
    logger.error("unexpected %s while drafting", type(error).__name__)
    return UNEXPECTED.format(kind=type(error).__name__)


def fail_job(settings: Settings, job_id: str, message: str) -> None:
    with session_scope(settings.sqlalchemy_url) as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is not None and job.state in (QUEUED, RUNNING):
            _mark_failed(job, message)
    logger.info("job %s failed", job_id)


def _mark_failed(job: Job, message: str) -> None:
    job.state, job.error, job.finished_at = FAILED, message, now()


def mark_dispatched(settings: Settings, job_id: str) -> None:
    """Note that the job was handed to the pool or the broker (``dispatched_at``)."""
    with session_scope(settings.sqlalchemy_url) as session:
        job = session.get(Job, job_id)
        if job is not None and job.dispatched_at is None:
            job.dispatched_at = now()


def set_progress(settings: Settings, job_id: str, progress: float) -> None:
    with session_scope(settings.sqlalchemy_url) as session:
        job = session.get(Job, job_id)
        if job is not None and job.state == RUNNING:
            job.progress = progress


def cancel_job(session: Session, job: Job) -> bool:
    """Cancel a job that has not finished; a running draft's result is then discarded."""
    if job.state not in (QUEUED, RUNNING):
        return False
    job.state, job.finished_at = CANCELLED, now()
    return True


def _elapsed(job: Job) -> float:
    return (now() - job.created_at).total_seconds()


def evaluate_signoff(settings: Settings, signoff_id: str) -> dict[str, Any] | None:
    """Label the draft and the signed text with ``clinical_eval.label`` and record which of the
    14 observations the radiologist changed: ``{name: [draft label, signed label]}``."""
    from clinical_eval import label

    with session_scope(settings.sqlalchemy_url) as session:
        signoff = session.get(SignOff, signoff_id)
        if signoff is None:
            return None
        draft, signed = (
            session.get(Report, signoff.draft_id),
            session.get(Report, signoff.signed_id),
        )
        assert draft is not None and signed is not None
        texts = [report_text(draft), report_text(signed)]
    before, after = label(texts)
    changes = {name: [before[name], after[name]] for name in before if before[name] != after[name]}
    with session_scope(settings.sqlalchemy_url) as session:
        signoff = session.get(SignOff, signoff_id)
        assert signoff is not None
        signoff.label_changes, signoff.evaluated_at = changes, now()
        signed = session.get(Report, signoff.signed_id)
        assert signed is not None
        signed.labels = dict(after)
    return changes


def report_text(report: Report) -> str:
    return f"FINDINGS: {report.findings}\nIMPRESSION: {report.impression}"


def answer_question(
    settings: Settings, study_id: str, question: str, history: list[tuple[str, str]]
) -> dict[str, str]:
    """The assistant's answer about one study: ``{"answer", "model"}``, or ``{"error"}`` for a
    question the model cannot take (empty, or too long with its history) or a study it cannot
    read."""
    import dicom
    from model.assistant import QuestionError, ask
    from model.report import PromptTooLongError

    generator = assistant_generator(settings.device)
    try:
        study = dicom.read_study(storage.study_folder(settings.studies_dir, study_id))
        pixels = dicom.to_model_input(pick_image(study), generator.image_size)
        answer = ask(generator, [pixels], question, history)
    except (dicom.DicomError, QuestionError, PromptTooLongError) as error:
        return {"error": str(error)}
    return {"answer": answer, "model": generator.checkpoint.model_id}
