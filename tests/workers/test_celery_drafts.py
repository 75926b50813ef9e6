"""Drafts through Celery: the API queues, a real ``echocxr worker`` drafts, the records say so;
a worker killed mid-draft costs a redelivery, never a second draft."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.main import create_app
from tests.support.service import auth, make_keys, phantom_bytes, upload, wait_for_job
from tests.workers.conftest import ALL_QUEUES, LiveWorker, running_worker
from workers.config import Settings
from workers.db import session_scope
from workers.records import Job, Report

pytestmark = pytest.mark.integration


@pytest.fixture
def worker(worker_settings: Settings, tmp_path: Path) -> Iterator[LiveWorker]:
    with running_worker(worker_settings, tmp_path / "worker.log", ALL_QUEUES) as live:
        yield live


@pytest.fixture
def api(worker_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(worker_settings)) as client:
        yield client


def test_the_api_queues_and_the_worker_drafts(
    worker: LiveWorker, api: TestClient, worker_settings: Settings
) -> None:
    key = make_keys(worker_settings)["radiologist"]
    study = upload(api, key, phantom_bytes(20))
    job = wait_for_job(api, key, study["job"]["id"])
    assert job["state"] == "done", (job, worker.log.read_text()[-3000:])
    report = api.get(f"/v1/reports/{job['report_id']}", headers=auth(key)).json()
    assert report["status"] == "preliminary" and report["findings"]
    answer = api.post(
        f"/v1/studies/{study['id']}/ask",
        json={"question": "Is there a pneumothorax?"},
        headers=auth(key),
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"].startswith("echocxr-ar")
    assert api.get("/readyz").json()["checks"]["broker"] == "ok"


def test_a_worker_killed_mid_draft_leaves_exactly_one_draft(
    worker: LiveWorker, api: TestClient, worker_settings: Settings
) -> None:
    """SIGKILL the pool process while it drafts (as the OOM killer would): Celery gives the
    task back (``reject_on_worker_lost``), a fresh pool process drafts it, and the unique
    ``reports.job_id`` keeps it to one draft."""
    key = make_keys(worker_settings)["uploader"]
    study = upload(api, key, phantom_bytes(21, downscale=1))  # full size: reading takes a while
    job_id = study["job"]["id"]
    _wait_for_state(worker_settings, job_id, "running")
    children = worker.pool_children
    assert children, "no pool process to kill"
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    job = wait_for_job(api, key, job_id, seconds=240)
    assert job["state"] == "done", (job, worker.log.read_text()[-3000:])
    assert job["attempts"] == 2
    with session_scope(worker_settings.sqlalchemy_url) as session:
        drafts = session.scalar(
            select(func.count()).select_from(Report).where(Report.study_id == study["id"])
        )
    assert drafts == 1


def _wait_for_state(settings: Settings, job_id: str, state: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with session_scope(settings.sqlalchemy_url) as session:
            job = session.get(Job, job_id)
            if job is not None and job.state == state:
                return
        time.sleep(0.02)
    pytest.fail(f"job {job_id} never reached {state}")


def test_a_job_queued_while_the_broker_was_unreachable_is_handed_over_later(
    worker: LiveWorker, worker_settings: Settings
) -> None:
    """An upload while Redis is unreachable is accepted and kept (the job is in the records);
    the next hand-over round gives it to the workers."""
    from service.dispatch import make_dispatcher, redispatch

    unreachable = worker_settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    key = make_keys(worker_settings)["uploader"]
    with TestClient(create_app(unreachable)) as offline:
        study = upload(offline, key, phantom_bytes(22))
    with session_scope(worker_settings.sqlalchemy_url) as session:
        job = session.get(Job, study["job"]["id"])
        assert job is not None and job.state == "queued" and job.dispatched_at is None
    dispatcher = make_dispatcher(worker_settings)
    try:
        assert redispatch(dispatcher, worker_settings, everything=False) == 1
    finally:
        dispatcher.close()
    with TestClient(create_app(worker_settings)) as online:
        assert wait_for_job(online, key, study["job"]["id"])["state"] == "done"
