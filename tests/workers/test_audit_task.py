"""The ``echocxr.audit`` task on the ``evaluate`` queue, run by a real Celery worker over real
Redis: it writes the audit into the run's folder, or the reason it could not."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from service.dispatch import CeleryDispatcher
from tests.workers.conftest import LiveWorker
from workers.audits import ERROR, INPUT, audit_folder, finished, run_audit_folder

pytestmark = pytest.mark.integration

ROWS = (
    "study_id,generated,reference\n"
    "a,Small left pleural effusion.,Left pleural effusion.\n"
    "b,No pneumothorax.,Large right pneumothorax.\n"
    "c,Cardiomegaly.,The heart is enlarged.\n"
)


def _queued(worker: LiveWorker, run_id: str, rows: str) -> Path:
    folder = audit_folder(worker.settings, run_id)
    folder.mkdir(parents=True)
    (folder / INPUT).write_text(rows)
    dispatcher = CeleryDispatcher(worker.settings)
    try:
        dispatcher.audit(run_id, ["labels", "rouge_l"], 200)
    finally:
        dispatcher.close()
    deadline = time.monotonic() + 120
    while not finished(folder) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert finished(folder), worker.log.read_text()[-2000:]
    return folder


def test_a_worker_writes_the_audit_into_its_folder(live_worker: LiveWorker) -> None:
    folder = _queued(live_worker, "run1", ROWS)
    assert "Per-observation F1" in (folder / "audit.html").read_text()
    assert '"n_studies": 3' in (folder / "audit.json").read_text()
    # a redelivered task finds the outcome and leaves it as it is
    written = (folder / "audit.html").stat().st_mtime_ns
    assert run_audit_folder(folder, ["labels"], 200) is True
    assert (folder / "audit.html").stat().st_mtime_ns == written


def test_an_input_it_cannot_read_ends_with_the_readers_reason(live_worker: LiveWorker) -> None:
    folder = _queued(live_worker, "run2", "study_id,generated\na,No effusion.\n")
    assert not (folder / "audit.html").exists()
    assert "reference" in (folder / ERROR).read_text()
