"""``ECHOCXR_TORCH_THREADS``: every process that drafts runs with its share of the cores, so N
worker processes on one machine do not each take every core (benchmarks/service_load.py)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from service.main import create_app
from tests.support.service import database_settings, make_keys, phantom_bytes, upload, wait_for_job
from tests.workers.conftest import LiveWorker, broker_settings, running_worker

pytestmark = pytest.mark.integration


@pytest.fixture
def share() -> Iterator[int]:
    """A thread count torch would not pick by itself here, whatever the machine; this test
    process's own is put back afterwards."""
    default = torch.get_num_threads()
    yield default + 1
    torch.set_num_threads(default)


def test_a_worker_pool_process_drafts_with_its_share(
    share: int, request: pytest.FixtureRequest, redis_url: str, tmp_path: Path
) -> None:
    """The pool process (where tasks run), not only the worker's parent, reads the setting back
    from torch, and it drafts."""
    with broker_settings("sqlite", request, redis_url, tmp_path / "data") as scale_out:
        settings = scale_out.model_copy(update={"torch_threads": share})
        log = tmp_path / "worker.log"
        with (
            running_worker(settings, log, "stat,generate") as worker,
            TestClient(create_app(settings)) as api,
        ):
            assert _logged_threads(worker, "ForkPoolWorker-1") == share
            key = make_keys(settings)["uploader"]
            job = wait_for_job(api, key, upload(api, key, phantom_bytes(30))["job"]["id"])
            assert job["state"] == "done", (job, log.read_text()[-3000:])


def test_a_worker_without_a_pool_drafts_with_its_share(
    share: int, request: pytest.FixtureRequest, redis_url: str, tmp_path: Path
) -> None:
    """``--pool solo``: tasks run in the worker's own process, which sets its count."""
    with broker_settings("sqlite", request, redis_url, tmp_path / "data") as scale_out:
        settings = scale_out.model_copy(update={"torch_threads": share})
        with running_worker(settings, tmp_path / "worker.log", "generate", "solo") as worker:
            assert _logged_threads(worker, "MainProcess") == share


def _logged_threads(worker: LiveWorker, process: str, seconds: float = 30) -> int:
    """The thread count that ``process`` of the worker read back from torch at its start."""
    pattern = re.compile(rf"{process}\] torch threads: (\d+)")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = pattern.search(worker.log.read_text(errors="replace"))
        if found:
            return int(found.group(1))
        time.sleep(0.2)
    pytest.fail(f"{process} logged no torch threads: {worker.log.read_text()[-2000:]}")


def test_the_embedded_server_drafts_with_its_share(share: int, tmp_path: Path) -> None:
    """Torch keeps the count per process but applies it to each thread on its first operation:
    the embedded pool's threads, which draft, see what the server's start set."""
    with database_settings("sqlite", tmp_path / "data", None, torch_threads=share) as settings:
        assert _threads_in_a_new_thread() != share
        with TestClient(create_app(settings)) as api:
            key = make_keys(settings)["uploader"]
            job = wait_for_job(api, key, upload(api, key, phantom_bytes(31))["job"]["id"])
            assert job["state"] == "done"
            assert _threads_in_a_new_thread() == share


def test_unset_leaves_torch_alone(tmp_path: Path) -> None:
    before = _threads_in_a_new_thread()
    with (
        database_settings("sqlite", tmp_path / "data", None) as settings,
        TestClient(create_app(settings)),
    ):
        assert settings.torch_threads is None
        assert _threads_in_a_new_thread() == before


def _threads_in_a_new_thread() -> int:
    """What a drafting thread started now would run with."""
    counts: list[int] = []
    thread = threading.Thread(target=lambda: counts.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    return counts[0]
