"""Audits asked for in the workspace: the set to audit as a CSV in the run's folder, handed to
the ``evaluate`` queue, and the run's state read back from that folder (``workers.audits``).

Two sets: the drafts signed over a period, each against its signed version (the product's own
quality signal), or a CSV the quality team uploads (``study_id, generated, reference``, or the
14 label columns, as ``echocxr audit --input`` takes). Either is checked by
``clinical_eval.audit_input`` before anything is queued, so a bad file is refused with the
reader's own message and leaves nothing behind.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from service.dispatch import Dispatcher
from service.models import AuditRun
from service.web.session import Viewer
from workers.audits import ERROR, INPUT, PROGRESS, audit_folder, fail, finished
from workers.config import Settings
from workers.jobs import report_text
from workers.records import Report, SignOff

SIGNED, CSV = "signed", "csv"
DEFAULT_METRICS = ("labels", "bleu", "rouge_l", "sacrebleu")
"""The groups that take seconds; METEOR (a JVM), CIDEr-D and MiniLM are there on request."""
RESAMPLES = 1000
MAX_CSV_BYTES = 20 * 1024 * 1024


class AuditRequestError(ValueError):
    """An audit that cannot be started as asked; the message says what to change."""


@dataclass(frozen=True)
class RunState:
    """Where an audit stands: ``queued``, ``running``, ``done`` or ``failed``."""

    state: str
    done: int = 0
    total: int = 0
    stage: str = ""
    error: str = ""

    @property
    def percent(self) -> int:
        if self.state == "done":
            return 100
        return round(100 * self.done / self.total) if self.total else 0


def run_state(folder: Path) -> RunState:
    if (folder / "audit.html").exists():
        return RunState("done")
    if (folder / ERROR).exists():
        return RunState("failed", error=(folder / ERROR).read_text(encoding="utf-8"))
    try:
        progress = json.loads((folder / PROGRESS).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return RunState("queued")
    return RunState("running", progress["done"], progress["total"], progress["stage"])


def signed_over(session: Session, first: date, last: date) -> bytes:
    """The drafts signed from ``first`` to ``last`` (whole days, UTC) against their signed
    versions, as an audit input CSV."""
    if last < first:
        raise AuditRequestError("the period ends before it starts; swap the two dates")
    start = datetime.combine(first, time(), UTC)
    end = datetime.combine(last + timedelta(days=1), time(), UTC)
    draft, signed = aliased(Report), aliased(Report)
    query = (
        select(draft, signed)
        .join(SignOff, SignOff.draft_id == draft.id)
        .join(signed, SignOff.signed_id == signed.id)
        .where(SignOff.created_at >= start, SignOff.created_at < end)
        .order_by(SignOff.created_at)
    )
    pairs = session.execute(query).all()
    if not pairs:
        raise AuditRequestError(
            f"no draft was signed from {first} to {last}; widen the period or upload a CSV"
        )
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["study_id", "generated", "reference"])
    for drafted, final in pairs:
        writer.writerow([drafted.study_id, report_text(drafted), report_text(final)])
    return buffer.getvalue().encode("utf-8")


def start_audit(
    session: Session,
    settings: Settings,
    dispatcher: Dispatcher,
    viewer: Viewer,
    *,
    source: str,
    title: str,
    data: bytes,
    metrics: Sequence[str],
) -> AuditRun:
    """Check the input, record the run and queue it on ``evaluate``.

    Raises ``AuditRequestError`` (or ``clinical_eval.ClinicalEvalError``) with nothing kept.
    """
    from clinical_eval.audit_input import load_single
    from clinical_eval.scoring import chosen_groups

    if len(data) > MAX_CSV_BYTES:
        raise AuditRequestError(
            f"the file is over {MAX_CSV_BYTES // 2**20} MB; split it, or run `echocxr audit`"
        )
    chosen = chosen_groups(metrics)
    run = AuditRun(
        requested_by_id=viewer.user_id,
        requested_by=viewer.name,
        source=source,
        title=title[:200],
        n_studies=0,
        metrics=chosen,
    )
    session.add(run)
    session.flush()
    folder = audit_folder(settings, run.id)
    folder.mkdir(parents=True)
    try:
        (folder / INPUT).write_bytes(data)
        run.n_studies = len(load_single(folder / INPUT).study_ids)
    except Exception:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    hand_over_audit(dispatcher, settings, run)
    return run


def hand_over_audit(dispatcher: Dispatcher, settings: Settings, run: AuditRun) -> None:
    """Queue the run; a queue that cannot be reached fails it with a reason (start it again)."""
    try:
        dispatcher.audit(run.id, list(run.metrics), RESAMPLES)
    except Exception as error:
        fail(
            audit_folder(settings, run.id),
            f"the evaluate queue could not be reached ({type(error).__name__}); start the "
            "audit again",
        )


def resume_audits(dispatcher: Dispatcher, settings: Settings, session: Session) -> int:
    """Queue again the runs without an outcome: the embedded pool's queue dies with its process.
    Returns how many."""
    waiting = [
        run
        for run in session.scalars(select(AuditRun).order_by(AuditRun.created_at))
        if audit_folder(settings, run.id).is_dir() and not finished(audit_folder(settings, run.id))
    ]
    for run in waiting:
        hand_over_audit(dispatcher, settings, run)
    return len(waiting)
