"""Real Celery workers (``echocxr worker`` subprocesses) on the test Redis, on queues with a
prefix unique to this run, sharing a data folder and database with the test's API."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from celery import Celery

from tests.support.service import database_settings
from workers.app import create_app
from workers.config import Settings

REPO = Path(__file__).resolve().parents[2]


@dataclass
class LiveWorker:
    """A running worker, the client app that sends it tasks, and the settings both share."""

    settings: Settings
    client: Celery
    process: subprocess.Popen[bytes]
    log: Path

    def queue(self, name: str) -> str:
        return self.settings.queue(name)

    @property
    def pool_children(self) -> list[int]:
        """The prefork pool's processes (where tasks run), children of the main process."""
        found = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True, check=False
        )
        return [int(pid) for pid in found.stdout.split()]


def environment(settings: Settings) -> dict[str, str]:
    """The ``ECHOCXR_*`` variables that give a subprocess these settings."""
    values = {
        f"ECHOCXR_{name.upper()}": str(value)
        for name, value in settings.model_dump(exclude_none=True).items()
    }
    return {**os.environ, **values, "ECHOCXR_BROKER_URL": settings.broker_url or ""}


@contextmanager
def running_worker(
    settings: Settings, log: Path, queues: str, pool: str = "prefork"
) -> Iterator[LiveWorker]:
    """``echocxr worker`` on ``queues`` (prefork, one child, by default), stopped afterwards."""
    echocxr = str(Path(sys.executable).with_name("echocxr"))
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [echocxr, "worker", "--queues", queues, "--pool", pool],
            cwd=REPO,
            env=environment(settings),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    client = create_app(settings)
    try:
        _wait_until_ready(process, log)
        yield LiveWorker(settings, client, process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        client.close()


def _wait_until_ready(process: subprocess.Popen[bytes], log: Path) -> None:
    """Until the worker logs that it consumes (Celery's "ready." line)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the worker exited: {log.read_text()[-2000:]}")
        if " ready." in log.read_text(errors="replace"):
            return
        time.sleep(0.2)
    pytest.fail(f"the worker was not ready within 90 s: {log.read_text()[-2000:]}")


@contextmanager
def broker_settings(
    kind: str, request: pytest.FixtureRequest, redis_url: str, data_dir: Path
) -> Iterator[Settings]:
    postgres = request.getfixturevalue("postgres_url") if kind == "postgresql" else None
    extra = {"broker_url": f"{redis_url}/0", "queue_prefix": f"t{uuid.uuid4().hex[:10]}-"}
    with database_settings(kind, data_dir, postgres, **extra) as settings:
        yield settings


@pytest.fixture(params=["sqlite", "postgresql"])
def worker_settings(
    request: pytest.FixtureRequest, redis_url: str, tmp_path: Path
) -> Iterator[Settings]:
    """Scale-out settings on either database, for the tests of drafting through the records."""
    with broker_settings(request.param, request, redis_url, tmp_path / "data") as settings:
        yield settings


ALL_QUEUES = "stat,generate,assistant,evaluate"


@pytest.fixture
def live_worker(
    request: pytest.FixtureRequest, redis_url: str, tmp_path: Path
) -> Iterator[LiveWorker]:
    """A worker on every queue, for the tasks that keep no records (SQLite is enough)."""
    with (
        broker_settings("sqlite", request, redis_url, tmp_path / "data") as settings,
        running_worker(settings, tmp_path / "worker.log", ALL_QUEUES) as worker,
    ):
        yield worker
