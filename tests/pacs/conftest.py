"""The PACS tests' rig: settings on a fresh data folder with quick retries, a real Orthanc per
test (its storage starts empty), the API served on a loopback port when Orthanc must reach it
(the Lua hook notifies it), and what the tests read back from Orthanc."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
import uvicorn
from pydicom import Dataset
from pydicom.uid import EncapsulatedPDFStorage, EnhancedSRStorage

from dicom.dicomweb import DicomWebClient
from service.main import create_app
from tests.support.components import free_port, require_tool
from tests.support.orthanc import OrthancServer, running_orthanc
from tests.support.service import auth, database_settings, make_keys
from workers.config import Settings

REPO = Path(__file__).resolve().parents[2]
LUA_HOOK = REPO / "service" / "pacs" / "orthanc.lua"
QUICK_RETRIES = {
    "push_attempts": 3,
    "push_backoff_s": 0.2,
    "push_backoff_max_s": 1.0,
    "pacs_timeout_s": 5.0,
    "dimse_quiet_s": 0.5,
}
T = TypeVar("T")


@pytest.fixture
def base_settings(tmp_path: Path) -> Iterator[Settings]:
    """Embedded mode on SQLite, no PACS yet (the tests point it at theirs)."""
    with database_settings("sqlite", tmp_path / "data", None, **QUICK_RETRIES) as settings:
        yield settings


@pytest.fixture
def keys(base_settings: Settings) -> dict[str, str]:
    return make_keys(base_settings)


@pytest.fixture
def storescu() -> str:
    return require_tool("storescu")


@pytest.fixture
def echoscu() -> str:
    return require_tool("echoscu")


def with_pacs(
    settings: Settings, orthanc: OrthancServer, dicomweb_root: str | None = None
) -> Settings:
    """The settings with ``orthanc`` as the PACS peer (its DICOMweb root possibly behind a
    proxy), deleting replaced drafts through its REST API."""
    return settings.model_copy(
        update={
            "pacs_dicomweb_url": dicomweb_root or orthanc.dicomweb_url,
            "pacs_orthanc_url": orthanc.url,
        }
    )


@pytest.fixture
def orthanc_peer(tmp_path: Path) -> Iterator[OrthancServer]:
    """An Orthanc of this test's own, without the notifying hook."""
    with running_orthanc(tmp_path / "orthanc") as server:
        yield server


@dataclass(frozen=True)
class LiveApi:
    url: str
    settings: Settings

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)


@contextmanager
def serving(settings: Settings, port: int) -> Iterator[LiveApi]:
    """The API served by uvicorn on a loopback port, in a thread of this process."""
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 30, "the API did not start")
    try:
        yield LiveApi(f"http://127.0.0.1:{port}", settings)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@dataclass(frozen=True)
class Rig:
    """Orthanc notifying the API on its stable-study event; the API pulling from it."""

    orthanc: OrthancServer
    api: LiveApi
    keys: dict[str, str]


@pytest.fixture
def rig(base_settings: Settings, keys: dict[str, str], tmp_path: Path) -> Iterator[Rig]:
    port = free_port()
    hook = {
        "LuaScripts": [str(LUA_HOOK)],
        "EchoCXR": {
            "NotifyUrl": f"http://127.0.0.1:{port}/v1/pacs/notify",
            "ApiKey": keys["uploader"],
        },
    }
    with (
        running_orthanc(tmp_path / "orthanc", hook) as orthanc,
        serving(with_pacs(base_settings, orthanc), port) as api,
    ):
        yield Rig(orthanc, api, keys)


def multipart(*parts: bytes) -> tuple[bytes, dict[str, str]]:
    """A STOW-RS body of DICOM parts, and its Content-Type header."""
    boundary = uuid.uuid4().hex
    body = b"".join(
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + part + b"\r\n"
        for part in parts
    )
    kind = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return body + f"--{boundary}--\r\n".encode(), {"Content-Type": kind}


def stow(client: httpx.Client, key: str, *parts: bytes) -> httpx.Response:
    """POST the parts to the service's STOW-RS endpoint as the user of ``key``."""
    body, headers = multipart(*parts)
    return client.post("/dicomweb/studies", content=body, headers={**headers, **auth(key)})


def wait_until(check: Callable[[], T], seconds: float, what: str) -> T:
    """``check()`` once it is truthy; fails the test with ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"{what} within {seconds:.0f} s")


def send_with_storescu(storescu: str, orthanc: OrthancServer, *files: Path) -> None:
    done = subprocess.run(
        [storescu, *orthanc.storescu_peer, *map(str, files)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def reports_in_pacs(orthanc: OrthancServer, study_uid: str) -> dict[str, list[Dataset]]:
    """The SRs and Encapsulated PDFs the PACS holds in the study, read back by WADO-RS; the
    number of other instances under ``"other"``."""
    found: dict[str, list[Dataset]] = {"sr": [], "pdf": [], "other": []}
    kinds = {EnhancedSRStorage: "sr", EncapsulatedPDFStorage: "pdf"}
    with DicomWebClient(orthanc.dicomweb_url) as client:
        for item in client.search_instances(study_uid):
            kind = kinds.get(str(item.SOPClassUID), "other")
            if kind == "other":
                found[kind].append(item)
                continue
            found[kind].append(
                client.retrieve_instance(
                    study_uid, str(item.SeriesInstanceUID), str(item.SOPInstanceUID)
                )
            )
    return found
