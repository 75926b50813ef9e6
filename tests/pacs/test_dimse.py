"""The DIMSE C-STORE SCP with C-ECHO, driven by dcmtk's echoscu and storescu: a study sent over
several associations is ingested once, when it is quiet, and drafted as an upload is."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import select

from service.dispatch import EmbeddedDispatcher
from service.pacs.dimse import listening
from tests.pacs.conftest import wait_until
from tests.support.components import free_port, wait_for_port
from tests.support.service import another_instance, phantom_bytes
from tests.workers.conftest import environment
from workers.config import Settings
from workers.db import session_scope
from workers.generators import resolve_profile
from workers.records import Job, Study, StudyFile

pytestmark = pytest.mark.integration

AE_TITLE = "ECHOCXR_TEST_SCP"


def _peer(port: int, calling: str = "MODALITY") -> list[str]:
    return ["-aet", calling, "-aec", AE_TITLE, "127.0.0.1", str(port)]


@contextmanager
def _scp(settings: Settings) -> Iterator[int]:
    """The SCP in this process, drafting in an embedded pool; yields its port."""
    dispatcher = EmbeddedDispatcher(settings)
    port = free_port()
    profile = resolve_profile(settings)
    try:
        with listening(
            settings, profile, dispatcher, host="127.0.0.1", port=port, ae_title=AE_TITLE
        ):
            yield port
    finally:
        dispatcher.close()


def _study(settings: Settings) -> tuple[Study, list[Job], int] | None:
    with session_scope(settings.sqlalchemy_url) as session:
        study = session.scalar(select(Study))
        if study is None:
            return None
        jobs = list(session.scalars(select(Job).where(Job.study_id == study.id)))
        files = len(list(session.scalars(select(StudyFile).where(StudyFile.study_id == study.id))))
        return study, jobs, files


def test_echo_answers_and_a_study_sent_in_two_associations_is_drafted_once(
    base_settings: Settings, echoscu: str, storescu: str, tmp_path: Path
) -> None:
    first, second = tmp_path / "first.dcm", tmp_path / "second.dcm"
    first.write_bytes(phantom_bytes(31))
    second.write_bytes(another_instance(first.read_bytes(), 1))
    # a quiet time that two storescu runs in a row stay within
    with _scp(base_settings.model_copy(update={"dimse_quiet_s": 3.0})) as port:
        echo = subprocess.run([echoscu, *_peer(port)], capture_output=True, text=True)
        assert echo.returncode == 0, echo.stderr
        for path in (first, second):  # one association each, as many modalities send
            sent = subprocess.run(
                [storescu, *_peer(port), str(path)], capture_output=True, text=True
            )
            assert sent.returncode == 0, sent.stderr
        study, jobs, files = wait_until(
            lambda: (found := _study(base_settings)) and found[1][0].state == "done" and found,
            300,
            "the study received over DIMSE was not drafted",
        )
    header = pydicom.dcmread(first, stop_before_pixels=True)
    assert study.study_instance_uid == header.StudyInstanceUID and study.return_to_pacs
    assert len(jobs) == 1 and files == 2 and study.frontal_count == 2


def test_a_calling_ae_title_not_listed_is_refused(
    base_settings: Settings, echoscu: str, storescu: str, tmp_path: Path
) -> None:
    settings = base_settings.model_copy(update={"dimse_peers": "MODALITY, PACS"})
    source = tmp_path / "study.dcm"
    source.write_bytes(phantom_bytes(32))
    with _scp(settings) as port:
        allowed = subprocess.run([echoscu, *_peer(port, "PACS")], capture_output=True)
        refused = subprocess.run(
            [storescu, *_peer(port, "STRANGER"), str(source)], capture_output=True, text=True
        )
    assert allowed.returncode == 0
    assert refused.returncode != 0 and "Rejected" in refused.stderr + refused.stdout
    assert _study(settings) is None


def test_the_dimse_listen_command_answers_echo_and_stops_on_sigterm(
    base_settings: Settings, echoscu: str
) -> None:
    port = free_port()
    command = [str(Path(sys.executable).with_name("echocxr")), "dimse-listen"]
    process = subprocess.Popen(
        [*command, "--ae-title", AE_TITLE, "--port", str(port)],
        env=environment(base_settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert wait_for_port("127.0.0.1", port, 60), "dimse-listen did not listen"
        echo = subprocess.run([echoscu, *_peer(port)], capture_output=True, text=True)
        assert echo.returncode == 0, echo.stderr
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output.decode(errors="replace")
    assert f"listening as {AE_TITLE}".encode() in output
