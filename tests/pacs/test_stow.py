"""DICOMweb STOW-RS into the service: instances stored and drafted as an upload is, the answer
in the standard's terms, and every refusal a 4xx that says why, with nothing half-stored."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pydicom
import pytest
from fastapi.testclient import TestClient
from pydicom import Dataset
from sqlalchemy import func, select

from dicom.dicomweb import DicomWebClient
from service.main import create_app
from tests.pacs.conftest import multipart, reports_in_pacs, serving, stow, wait_until, with_pacs
from tests.support.components import free_port
from tests.support.orthanc import OrthancServer
from tests.support.service import auth, phantom_bytes, wait_for_job
from workers.config import Settings
from workers.db import session_scope
from workers.records import Job, Study, StudyFile

pytestmark = pytest.mark.integration

CANNOT_UNDERSTAND, PROCESSING_FAILURE = 0xC000, 0x0110


def _not_a_chest_radiograph(data: bytes) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.StudyInstanceUID = pydicom.uid.generate_uid()
    ds.Modality, ds.BodyPartExamined = "CT", "HEAD"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture
def client(base_settings: Settings, orthanc_peer: OrthancServer) -> Iterator[TestClient]:
    with TestClient(create_app(with_pacs(base_settings, orthanc_peer))) as test_client:
        yield test_client


def test_stored_instances_are_drafted_and_pushed_back_to_the_pacs(
    client: TestClient, keys: dict[str, str], orthanc_peer: OrthancServer
) -> None:
    data = phantom_bytes(21)
    header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    response = stow(client, keys["uploader"], data)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/dicom+json"
    answer = Dataset.from_json(response.json())
    assert [str(item.ReferencedSOPInstanceUID) for item in answer.ReferencedSOPSequence] == [
        str(header.SOPInstanceUID)
    ]
    assert "FailedSOPSequence" not in answer

    settings: Settings = client.app.state.settings  # type: ignore[attr-defined]
    with session_scope(settings.sqlalchemy_url) as session:
        job_id = session.scalar(select(Job.id))
    job = wait_for_job(client, keys["uploader"], str(job_id), seconds=300)
    assert job["state"] == "done", job["error"]
    job = wait_until(
        lambda: (
            (j := client.get(f"/v1/jobs/{job_id}", headers=auth(keys["uploader"])).json())
            and j["pushes"]
            and j["pushes"][0]["state"] == "done"
            and j
        ),
        60,
        "the draft was not pushed",
    )
    found = reports_in_pacs(orthanc_peer, str(header.StudyInstanceUID))
    assert len(found["sr"]) == len(found["pdf"]) == 1 and not found["other"]
    assert found["sr"][0].VerificationFlag == "UNVERIFIED"

    again = stow(client, keys["admin"], data)  # the same study again: kept, nothing new
    assert again.status_code == 200
    with session_scope(settings.sqlalchemy_url) as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 1


def test_parts_it_cannot_read_are_listed_as_failed_and_the_rest_kept(
    client: TestClient, keys: dict[str, str]
) -> None:
    good = phantom_bytes(22)
    response = stow(client, keys["uploader"], b"this is not DICOM", good)
    assert response.status_code == 202, response.text
    answer = Dataset.from_json(response.json())
    assert len(answer.ReferencedSOPSequence) == 1
    assert [item.FailureReason for item in answer.FailedSOPSequence] == [CANNOT_UNDERSTAND]
    assert "Part 10" in response.headers["warning"]


def test_a_study_that_is_not_a_chest_radiograph_is_refused_with_nothing_stored(
    client: TestClient, keys: dict[str, str]
) -> None:
    response = stow(client, keys["uploader"], _not_a_chest_radiograph(phantom_bytes(23)))
    assert response.status_code == 409, response.text
    answer = Dataset.from_json(response.json())
    assert [item.FailureReason for item in answer.FailedSOPSequence] == [PROCESSING_FAILURE]
    assert "ReferencedSOPSequence" not in answer
    assert (
        response.headers["warning"].startswith('299 echocxr "')
        and "Modality" in (response.headers["warning"])
    )
    settings: Settings = client.app.state.settings  # type: ignore[attr-defined]
    with session_scope(settings.sqlalchemy_url) as session:
        for table in (Study, StudyFile, Job):
            assert session.scalar(select(func.count()).select_from(table)) == 0


@pytest.mark.parametrize(
    ("headers", "body", "code", "words"),
    [
        ({"Content-Type": "application/dicom"}, b"x", 415, "multipart/related"),
        ({"Content-Type": "multipart/related"}, b"x", 400, "boundary"),
    ],
)
def test_a_request_that_is_not_stow_rs_is_a_4xx_that_says_what_to_send(
    client: TestClient,
    keys: dict[str, str],
    headers: dict[str, str],
    body: bytes,
    code: int,
    words: str,
) -> None:
    response = client.post(
        "/dicomweb/studies", content=body, headers={**headers, **auth(keys["uploader"])}
    )
    assert response.status_code == code and words in response.json()["detail"]


def test_only_uploaders_and_admins_store_and_the_body_limit_holds(
    base_settings: Settings, keys: dict[str, str]
) -> None:
    small = base_settings.model_copy(update={"max_upload_mb": 1})
    with TestClient(create_app(small)) as client:
        assert stow(client, keys["radiologist"], phantom_bytes(24)).status_code == 403
        assert stow(client, keys["auditor"], phantom_bytes(24)).status_code == 403
        body, headers = multipart(phantom_bytes(24))
        assert client.post("/dicomweb/studies", content=body, headers=headers).status_code == 401
        too_big = stow(client, keys["uploader"], b"\0" * (2 * 1024 * 1024))
        assert too_big.status_code == 413 and "ECHOCXR_MAX_UPLOAD_MB" in too_big.json()["detail"]


def test_the_service_speaks_stow_rs_to_a_dicomweb_client_over_http(
    base_settings: Settings, keys: dict[str, str]
) -> None:
    """The project's DICOMweb client, as a PACS would send, against the served API."""
    with (
        serving(base_settings, free_port()) as api,
        DicomWebClient(f"{api.url}/dicomweb", headers=auth(keys["uploader"])) as standard,
    ):
        answer = standard.store([phantom_bytes(25)])
    assert len(answer.ReferencedSOPSequence) == 1
