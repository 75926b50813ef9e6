"""Task definitions: thin, explicitly named, taking ids and plain data, calling ``workers.jobs``.

Every task is idempotent under redelivery (``acks_late``): see ``workers.jobs``. Bad input is
recorded on the job (or returned), never retried: the same input would fail again.
"""

from __future__ import annotations

import logging
from typing import Any

from workers.app import PACS, app, queue_for
from workers.config import Settings

logger = logging.getLogger(__name__)


def settings() -> Settings:
    configured: Settings = app.conf.echocxr_settings
    return configured


@app.task(name="echocxr.draft", ignore_result=True, soft_time_limit=3600, time_limit=3700)
def draft(job_id: str) -> str | None:
    """Draft one study's job; the outcome is in the records (the job and its report). A draft
    of a study from the PACS is then pushed back, on the ``pacs`` queue."""
    from workers.jobs import run_draft
    from workers.pacs import pending_pushes

    report_id = run_draft(settings(), job_id)
    send_pushes(pending_pushes(settings(), job_id=job_id))
    return report_id


@app.task(name="echocxr.pacs_pull", ignore_result=True, soft_time_limit=600, time_limit=660)
def pacs_pull(study_uid: str, priority: str = "routine") -> str | None:
    """Pull a study from the PACS and ingest it; a new draft goes to the GPU workers. Returns
    the drafting job's id, or None when the PACS has nothing to draft or refused the pull (the
    log says why; the next notification or poll tries again)."""
    from dicom import DicomError
    from workers.generators import resolve_profile
    from workers.jobs import mark_dispatched
    from workers.pacs import pull_study

    try:
        pulled = pull_study(settings(), resolve_profile(settings()), study_uid, priority)
    except DicomError as error:
        logger.warning("pull refused: %s", type(error).__name__)
        return None
    if pulled is None:
        return None
    job = pulled.ingested.job
    if pulled.ingested.new_job:
        queue = settings().queue(queue_for(priority))
        app.send_task("echocxr.draft", args=[job.id], queue=queue, ignore_result=True)
        mark_dispatched(settings(), job.id)
    send_pushes(pulled.push_ids)
    return str(job.id)


@app.task(name="echocxr.pacs_push", ignore_result=True, soft_time_limit=600, time_limit=660)
def pacs_push(push_id: str) -> None:
    """Try one push of a report to the PACS; a failed try sends the next one, delayed."""
    from workers.pacs import push_report

    wait = push_report(settings(), push_id)
    if wait is not None:
        send_pushes([push_id], wait)


def send_pushes(push_ids: list[str], countdown: float = 0.0) -> None:
    for push_id in push_ids:
        app.send_task(
            "echocxr.pacs_push",
            args=[push_id],
            queue=settings().queue(PACS),
            countdown=countdown,
            ignore_result=True,
        )


@app.task(name="echocxr.ask", soft_time_limit=600, time_limit=660)
def ask(study_id: str, question: str, history: list[list[str]]) -> dict[str, str]:
    """The assistant's answer about one study (``workers.jobs.answer_question``)."""
    from workers.jobs import answer_question

    turns = [(asked, answered) for asked, answered in history]
    return answer_question(settings(), study_id, question, turns)


@app.task(name="echocxr.evaluate_signoff", ignore_result=True, soft_time_limit=600, time_limit=660)
def evaluate_signoff(signoff_id: str) -> dict[str, Any] | None:
    """Label a draft and its signed version and record the observations the reader changed."""
    from workers.jobs import evaluate_signoff as evaluate

    return evaluate(settings(), signoff_id)


@app.task(
    name="echocxr.evaluate",
    autoretry_for=(ConnectionError, TimeoutError),
    retry_backoff=True,
    retry_kwargs={"max_retries": 3},
    soft_time_limit=1800,
    time_limit=1900,
)
def evaluate(
    generated: list[str], reference: list[str], metrics: list[str] | None = None
) -> dict[str, Any]:
    """Score generated reports against references; returns ``clinical_eval.score``'s dict.

    Bad input (unequal lengths, unknown metric group) raises ``MetricInputError``, which is not
    retried: the same input would fail again.
    """
    from clinical_eval import score

    return {"metrics": score(generated, reference, metrics), "n_studies": len(generated)}


@app.task(
    name="echocxr.audit", ignore_result=True, soft_time_limit=6 * 3600, time_limit=6 * 3600 + 300
)
def audit(run_id: str, metrics: list[str], resamples: int) -> bool:
    """Audit the ``input.csv`` of the run's folder into the same folder (``workers.audits``);
    the outcome is in the folder, so the task keeps no result."""
    from workers.audits import audit_folder, run_audit_folder

    return run_audit_folder(audit_folder(settings(), run_id), metrics, resamples)


@app.task(name="echocxr.batch_chunk", ignore_result=True, soft_time_limit=3600, time_limit=3700)
def batch_chunk(batch_id: str, chunk: int) -> int:
    """Draft one chunk of a batch (``workers.batches``); a redelivered chunk drafts only the
    studies not recorded yet. Returns how many this delivery recorded."""
    from workers.batches import run_chunk

    return run_chunk(settings(), batch_id, chunk)


@app.task(name="echocxr.draft_archive", soft_time_limit=24 * 3600, time_limit=24 * 3600 + 300)
def draft_archive(
    archive: str, out: str, engine: str | None = None, batch_size: int = 64
) -> dict[str, int]:
    """Draft every study of an archive folder into ``out``, both on storage the worker shares
    with whoever sends the task; returns how many entries were drafted, already drafted and
    failed (``out/archive.csv`` says which and why).

    A folder that is not an archive raises ``ArchiveFolderError``, which is not retried: the
    same message would fail again.
    """
    from pathlib import Path

    import model
    from workers.archive import StageSeconds, count_outcomes
    from workers.archive import draft_archive as draft_all
    from workers.generators import shipped_generator

    engine = engine or model.DEFAULT_ARCHIVE_ENGINE
    generator = shipped_generator(engine, settings().device, batch_size)
    return count_outcomes(draft_all(Path(archive), Path(out), generator, StageSeconds()))
