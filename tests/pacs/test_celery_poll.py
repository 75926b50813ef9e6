"""A PACS that does not notify is polled (QIDO-RS): scale-out, where a real Celery worker pulls
the study on the ``pacs`` queue, drafts it on ``generate`` and pushes the draft back; and
``echocxr pacs poll`` in the embedded mode, which does all of it before it returns."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from service.dispatch import CeleryDispatcher
from service.pacs.polling import poll_once
from tests.pacs.conftest import (
    QUICK_RETRIES,
    reports_in_pacs,
    send_with_storescu,
    wait_until,
    with_pacs,
)
from tests.support.orthanc import OrthancServer
from tests.support.service import phantom_bytes
from tests.workers.conftest import broker_settings, environment, running_worker
from workers.config import Settings

pytestmark = pytest.mark.integration

CENTURY = 36_500  # the phantom's study dates lie years back


@pytest.fixture
def celery_settings(
    request: pytest.FixtureRequest, redis_url: str, tmp_path: Path, orthanc_peer: OrthancServer
) -> Iterator[Settings]:
    with broker_settings("postgresql", request, redis_url, tmp_path / "data") as settings:
        yield with_pacs(settings, orthanc_peer).model_copy(update=QUICK_RETRIES)


def test_a_polled_study_is_pulled_drafted_and_pushed_by_a_celery_worker(
    celery_settings: Settings, orthanc_peer: OrthancServer, storescu: str, tmp_path: Path
) -> None:
    source = tmp_path / "study.dcm"
    source.write_bytes(phantom_bytes(51))
    uid = str(pydicom.dcmread(source, stop_before_pixels=True).StudyInstanceUID)
    send_with_storescu(storescu, orthanc_peer, source)
    dispatcher = CeleryDispatcher(celery_settings)
    log = tmp_path / "worker.log"
    try:
        with running_worker(celery_settings, log, "stat,generate,pacs"):
            assert poll_once(dispatcher, celery_settings, CENTURY) == [uid]
            found = wait_until(
                lambda: (now := reports_in_pacs(orthanc_peer, uid))["sr"] and now["pdf"] and now,
                300,
                "the worker did not push a draft",
            )
            assert found["sr"][0].VerificationFlag == "UNVERIFIED" and len(found["other"]) == 1
            # every instance pulled is here now: a second poll finds nothing to do
            assert poll_once(dispatcher, celery_settings, CENTURY) == []
    finally:
        dispatcher.close()


def test_pacs_poll_in_the_embedded_mode_drafts_and_pushes_before_it_returns(
    base_settings: Settings, orthanc_peer: OrthancServer, storescu: str, tmp_path: Path
) -> None:
    source = tmp_path / "study.dcm"
    source.write_bytes(phantom_bytes(52))
    uid = str(pydicom.dcmread(source, stop_before_pixels=True).StudyInstanceUID)
    send_with_storescu(storescu, orthanc_peer, source)
    command = [str(Path(sys.executable).with_name("echocxr")), "pacs", "poll"]
    env = environment(with_pacs(base_settings, orthanc_peer))
    done = subprocess.run(
        [*command, "--days", str(CENTURY)], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 studies to pull" in done.stdout
    found = reports_in_pacs(orthanc_peer, uid)
    assert len(found["sr"]) == len(found["pdf"]) == 1


def test_pacs_poll_without_a_pacs_says_what_to_set(base_settings: Settings) -> None:
    command = [str(Path(sys.executable).with_name("echocxr")), "pacs", "poll"]
    done = subprocess.run(command, env=environment(base_settings), capture_output=True, text=True)
    assert done.returncode == 2 and "ECHOCXR_PACS_DICOMWEB_URL" in done.stderr
