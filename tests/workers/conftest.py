"""A real Celery worker process on the test Redis, listening on a queue unique to this run."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from celery import Celery

from workers.app import create_app

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class LiveWorker:
    """The client app and the queue the worker consumes."""

    client: Celery
    queue: str


@pytest.fixture(scope="session")
def live_worker(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveWorker]:
    broker = f"{redis_url}/0"
    queue = f"evaluate-test-{uuid.uuid4().hex[:12]}"
    env = {**os.environ, "ECHOCXR_BROKER_URL": broker, "ECHOCXR_RESULT_BACKEND": broker}
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "workers.app",
                "worker",
                "-Q",
                queue,
                "--pool",
                "solo",
                "--concurrency",
                "1",
                "--loglevel",
                "INFO",
                "--hostname",
                f"{queue}@%h",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    saved = {key: os.environ.get(key) for key in ("ECHOCXR_BROKER_URL", "ECHOCXR_RESULT_BACKEND")}
    os.environ.update({"ECHOCXR_BROKER_URL": broker, "ECHOCXR_RESULT_BACKEND": broker})
    try:
        yield LiveWorker(create_app(), queue)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
