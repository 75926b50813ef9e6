"""Batches through real Celery workers, and the faults they must survive: a worker killed
mid-chunk (the chunk is redone, every study recorded exactly once) and Redis restarted during a
batch (it completes once Redis is back, nothing lost or duplicated). An API restart mid-batch is
in ``tests/service/test_batches.py``."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.main import create_app
from tests.support.archives import phantom_archive
from tests.support.components import free_port, missing, wait_for_port
from tests.support.service import auth, database_settings, make_keys, wait_for_batch
from tests.workers.conftest import LiveWorker, running_worker
from workers.config import Settings
from workers.db import session_scope
from workers.records import BatchItem

pytestmark = pytest.mark.integration


def _settings(tmp_path: Path, broker_url: str, **extra: object) -> Iterator[Settings]:
    extra = {
        "broker_url": broker_url,
        "queue_prefix": f"t{uuid.uuid4().hex[:10]}-",
        "batch_roots": str(tmp_path / "archives"),
        "batch_readers": 1,
        **extra,
    }
    return database_settings("sqlite", tmp_path / "data", None, **extra)


def _submit(api: TestClient, key: str, folder: Path) -> str:
    response = api.post("/v1/batches", data={"folder": str(folder)}, headers=auth(key))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _items(settings: Settings, state: str) -> list[BatchItem]:
    with session_scope(settings.sqlalchemy_url) as session:
        items = list(session.scalars(select(BatchItem).where(BatchItem.state == state)))
        session.expunge_all()
    return items


def _wait_for_item(settings: Settings, state: str, seconds: float = 600) -> BatchItem:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = _items(settings, state)
        if found:
            return found[0]
        time.sleep(0.05)
    pytest.fail(f"no study of the batch became {state} within {seconds} s")


def _drafted_exactly_once(batch: dict, settings: Settings, total: int) -> None:
    assert batch["state"] == "done" and batch["counts"]["done"] == total, batch
    reports = settings.batches_dir / batch["id"] / "reports"
    assert len([p for p in reports.iterdir() if not p.name.startswith(".")]) == total


def test_a_worker_killed_mid_chunk_has_its_chunk_redone(
    request: pytest.FixtureRequest, redis_url: str, tmp_path: Path
) -> None:
    """Two workers share a batch; the pool process of the one drafting the first chunk is
    SIGKILLed (as the OOM killer would): Celery gives the chunk back, and its studies are
    drafted again, each recorded once; the studies drafted before the kill are not redone."""
    phantom_archive(tmp_path / "archives" / "ward", 6, downscale=2)
    with ExitStack() as stack:
        settings = stack.enter_context(_settings(tmp_path, f"{redis_url}/0", batch_chunk=3))
        workers = [
            stack.enter_context(running_worker(settings, tmp_path / f"worker{n}.log", "generate"))
            for n in range(2)
        ]
        api = stack.enter_context(TestClient(create_app(settings)))
        key = make_keys(settings)["auditor"]
        batch_id = _submit(api, key, tmp_path / "archives" / "ward")
        _wait_for_item(settings, "running")
        for pid in _reading(workers):
            os.kill(pid, signal.SIGKILL)
        batch = wait_for_batch(api, key, batch_id, seconds=900)
    _drafted_exactly_once(batch, settings, 6)
    attempts = sorted(item.attempts for item in _items(settings, "done"))
    assert attempts.count(2) >= 1 and attempts.count(1) >= 3, attempts


def _reading(workers: list[LiveWorker], seconds: float = 600) -> list[int]:
    """The pool processes of the first worker seen reading a chunk (its reader processes are
    its children)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for worker in workers:
            if any(_children(pid) for pid in worker.pool_children):
                return worker.pool_children
        time.sleep(0.05)
    pytest.fail(f"no worker started reading within {seconds} s")


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(child) for child in found.stdout.split()]


@contextmanager
def _private_redis(folder: Path) -> Iterator[tuple[int, list[str]]]:
    """A Redis of this test's own (the shared one must not restart under other tests), keeping
    its data in an append-only file, as a production broker does; yields its port and the
    command that (re)starts it."""
    server = shutil.which("redis-server")
    if server is None:
        missing("redis-server", "install the Debian package redis-server")
    port = free_port()
    folder.mkdir(parents=True)
    command = [
        str(server),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(folder),
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--save",
        "",
        "--daemonize",
        "yes",
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=30)
    assert wait_for_port("127.0.0.1", port, 10)
    try:
        yield port, command
    finally:
        _stop_redis(port)


def _stop_redis(port: int) -> None:
    subprocess.run(
        ["redis-cli", "-p", str(port), "shutdown"], capture_output=True, timeout=30, check=False
    )


def test_a_batch_completes_after_redis_restarts(tmp_path: Path) -> None:
    """Redis stops while a worker drafts the batch and comes back 3 s later: the chunk being
    drafted finishes, the worker reconnects, the queued chunks are still there (append-only
    file), and every study is recorded exactly once."""
    phantom_archive(tmp_path / "archives" / "night", 4)
    with ExitStack() as stack:
        port, start = stack.enter_context(_private_redis(tmp_path / "redis"))
        settings = stack.enter_context(
            # the production visibility timeout (hours): the chunk running when Redis went away
            # must finish without waiting for its redelivery
            _settings(tmp_path, f"redis://127.0.0.1:{port}/0", batch_chunk=2)
        )
        stack.enter_context(running_worker(settings, tmp_path / "worker.log", "generate"))
        api = stack.enter_context(TestClient(create_app(settings)))
        key = make_keys(settings)["auditor"]
        batch_id = _submit(api, key, tmp_path / "archives" / "night")
        _wait_for_item(settings, "done")
        _stop_redis(port)
        time.sleep(3)
        subprocess.run(start, check=True, capture_output=True, timeout=30)
        assert wait_for_port("127.0.0.1", port, 10)
        batch = wait_for_batch(api, key, batch_id, seconds=900)
    _drafted_exactly_once(batch, settings, 4)
