"""Task definitions: thin, explicitly named, taking ids and plain data, calling ``workers.jobs``.

Every task is idempotent under redelivery (``acks_late``): see ``workers.jobs``. Bad input is
recorded on the job (or returned), never retried: the same input would fail again.
"""

from __future__ import annotations

from typing import Any

from workers.app import app
from workers.config import Settings


def settings() -> Settings:
    configured: Settings = app.conf.echocxr_settings
    return configured


@app.task(name="echocxr.draft", ignore_result=True, soft_time_limit=3600, time_limit=3700)
def draft(job_id: str) -> str | None:
    """Draft one study's job; the outcome is in the records (the job and its report)."""
    from workers.jobs import run_draft

    return run_draft(settings(), job_id)


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
