"""Running one audit in a folder: what the ``evaluate`` queue's ``echocxr.audit`` task runs, in a
Celery worker or the API's embedded pool alike.

The folder is the audit's whole record, so the task takes only its path and no worker writes a
table: ``input.csv`` (``study_id, generated, reference``, as ``echocxr audit --input`` reads)
goes in; ``progress.json`` is rewritten as the labelling advances; ``audit.json`` and
``audit.html`` appear whole when it is done, or ``error.txt`` says why it is not. A redelivered
task finds the outcome there and does nothing.

Logs name the error type only: an input's message may quote report text.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from dicom.bundle import write_atomically
from workers.config import Settings

logger = logging.getLogger(__name__)

INPUT, PROGRESS, ERROR = "input.csv", "progress.json", "error.txt"
OUTCOMES = ("audit.html", ERROR)
UNEXPECTED = (
    "the audit failed unexpectedly ({kind}); run it again, and the worker log names the error"
)


def audit_folder(settings: Settings, run_id: str) -> Path:
    """Where the audit ``run_id`` keeps its files, under the data folder API and workers share."""
    if not run_id.isalnum():
        raise ValueError(f"not an audit id: {run_id!r}")
    return settings.data_dir / "audits" / run_id


def finished(folder: Path) -> bool:
    """Whether the audit in ``folder`` has an outcome (its page, or the reason it has none)."""
    return any((folder / name).exists() for name in OUTCOMES)


def run_audit_folder(folder: Path, metrics: Sequence[str], resamples: int) -> bool:
    """Audit ``folder/input.csv`` into the folder; returns whether the audit page was written.

    Parameters
    ----------
    folder : Path
        The audit's folder, on storage the API and the workers share.
    metrics : sequence of str
        Metric groups of ``clinical_eval.METRIC_GROUPS``.
    resamples : int
        Bootstrap resamples for the intervals.
    """
    from clinical_eval.audit import planned_work, run_audit, write_outputs
    from clinical_eval.audit_html import render
    from clinical_eval.audit_input import load_single
    from clinical_eval.errors import ClinicalEvalError

    if finished(folder):
        return (folder / "audit.html").exists()
    try:
        data = load_single(folder / INPUT)
        report = run_audit(data, metrics, resamples, _progress(folder, planned_work(data)))
        write_outputs(folder, report, render(report))
    except ClinicalEvalError as error:
        fail(folder, str(error))
        return False
    except Exception as error:
        logger.error("audit failed with %s", type(error).__name__)
        fail(folder, UNEXPECTED.format(kind=type(error).__name__))
        return False
    return True


def fail(folder: Path, message: str) -> None:
    """Record why the audit has no page; it is final, as a finished audit is."""
    write_atomically(folder / ERROR, message.encode("utf-8"))


def _progress(folder: Path, total: int) -> Callable[[str, int], None]:
    """A ``run_audit`` progress callback that keeps ``progress.json`` current."""
    done = 0

    def tick(stage: str, count: int) -> None:
        nonlocal done
        done += count
        document = {"stage": stage, "done": min(done, total), "total": total}
        write_atomically(folder / PROGRESS, json.dumps(document).encode("utf-8"))

    return tick
