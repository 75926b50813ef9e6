"""The PACS failing while a draft goes back: down, answering 5xx, or never answering. The push
is tried again with a growing wait, then marked failed on the job with the reason; nothing is
lost: the report stays readable, and once the PACS is back a new sending of the study pushes it.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import pydicom
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.main import create_app
from tests.pacs.conftest import reports_in_pacs, stow, wait_until, with_pacs
from tests.support.components import free_port
from tests.support.faults import FaultyProxy, Mode, faulty_proxy
from tests.support.orthanc import OrthancServer
from tests.support.service import auth, phantom_bytes
from workers.config import Settings
from workers.db import session_scope
from workers.records import Job

pytestmark = pytest.mark.integration


def _stow(client: TestClient, key: str, data: bytes) -> None:
    response = stow(client, key, data)
    assert response.status_code == 200, response.text


def _pushes(client: TestClient, key: str) -> list[dict]:
    settings: Settings = client.app.state.settings  # type: ignore[attr-defined]
    with session_scope(settings.sqlalchemy_url) as session:
        job_id = session.scalar(select(Job.id))
    if job_id is None:
        return []
    return list(client.get(f"/v1/jobs/{job_id}", headers=auth(key)).json()["pushes"])


def _finished(client: TestClient, key: str) -> list[dict] | None:
    pushes = _pushes(client, key)
    return pushes if pushes and pushes[-1]["state"] in ("done", "failed") else None


@pytest.fixture
def proxy(orthanc_peer: OrthancServer) -> Iterator[FaultyProxy]:
    with faulty_proxy(orthanc_peer.url) as running:
        yield running


FAULTS: dict[str, tuple[Mode, str]] = {
    "down": ("pass", "ConnectError"),  # the settings point at a port nothing listens on
    "5xx": ("error", "HTTP 503"),
    "timeout": ("hang", "ReadTimeout"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_failing_pacs_is_retried_then_the_push_failed_and_nothing_lost(
    fault: str,
    base_settings: Settings,
    keys: dict[str, str],
    orthanc_peer: OrthancServer,
    proxy: FaultyProxy,
) -> None:
    mode, reason = FAULTS[fault]
    proxy.mode = mode
    root = f"http://127.0.0.1:{free_port()}" if fault == "down" else proxy.url
    settings = with_pacs(base_settings, orthanc_peer, f"{root}/dicom-web").model_copy(
        update={"pacs_timeout_s": 1.0}
    )
    data = phantom_bytes(41)
    study_uid = str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).StudyInstanceUID)
    key = keys["uploader"]
    with TestClient(create_app(settings)) as client:
        _stow(client, key, data)
        pushes = wait_until(lambda: _finished(client, key), 300, "the push did not end")
        assert [(p["state"], p["attempts"]) for p in pushes] == [("failed", 3)]
        assert reason in pushes[0]["error"] and "gave up after 3 tries" in pushes[0]["error"]
        if fault != "down":
            assert proxy.requests >= 3
        report = client.get(
            f"/v1/reports/{pushes[0]['report_id']}", headers=auth(keys["radiologist"])
        )
        assert report.status_code == 200 and report.json()["kind"] == "draft"
    assert reports_in_pacs(orthanc_peer, study_uid)["sr"] == []

    # the PACS is back: the study sent again pushes the same report, drafting nothing new
    proxy.mode = "pass"
    healthy = with_pacs(base_settings, orthanc_peer, f"{proxy.url}/dicom-web")
    with TestClient(create_app(healthy)) as client:
        _stow(client, key, data)
        pushes = wait_until(
            lambda: (found := _finished(client, key)) and found[0]["state"] == "done" and found,
            60,
            "the push was not tried again",
        )
    assert pushes[0]["report_id"] == report.json()["id"]
    found = reports_in_pacs(orthanc_peer, study_uid)
    assert len(found["sr"]) == len(found["pdf"]) == 1


def test_a_push_that_fails_once_succeeds_on_the_next_try(
    base_settings: Settings,
    keys: dict[str, str],
    orthanc_peer: OrthancServer,
    proxy: FaultyProxy,
) -> None:
    proxy.mode, proxy.failures_left = "error", 1
    settings = with_pacs(base_settings, orthanc_peer, f"{proxy.url}/dicom-web")
    with TestClient(create_app(settings)) as client:
        _stow(client, keys["uploader"], phantom_bytes(42))
        pushes = wait_until(lambda: _finished(client, keys["uploader"]), 300, "no push ended")
    assert [(p["state"], p["attempts"], p["error"]) for p in pushes] == [("done", 2, None)]
