"""Hostile and broken uploads: a 4xx with an actionable message, and nothing half-stored (no
row, no file, no folder)."""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.support.service import auth, phantom_bytes
from workers.config import Settings
from workers.db import session_scope
from workers.records import Job, Study, StudyFile

pytestmark = pytest.mark.integration


def _nothing_stored(settings: Settings) -> None:
    with session_scope(settings.sqlalchemy_url) as session:
        for table in (Study, StudyFile, Job):
            assert session.scalar(select(func.count()).select_from(table)) == 0
    for folder in (settings.files_dir, settings.studies_dir):
        assert not folder.exists() or not any(folder.rglob("*")), list(folder.rglob("*"))


def _post(client: TestClient, key: str, data: bytes, name: str = "x.dcm") -> httpx.Response:
    return client.post("/v1/studies", files={"file": (name, data)}, headers=auth(key))


def _zip_bomb() -> bytes:
    """Four members of 700 MB of zeros each: a few MB compressed, 2.8 GB inflated, over the
    2 GB the reader accepts in all (``ReadLimits.max_total_bytes``)."""
    buffer = io.BytesIO()
    chunk = b"\0" * (1 << 20)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for index in range(4):
            with archive.open(f"bomb-{index}.dcm", "w", force_zip64=True) as member:
                for _ in range(700):
                    member.write(chunk)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def zip_bomb() -> bytes:
    return _zip_bomb()


def _traversal() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../../etc/cron.d/evil", phantom_bytes(1))
    return buffer.getvalue()


CASES = {
    "not DICOM": (b"%PDF-1.4 a scanned request form", "DICOM"),
    "truncated": (phantom_bytes(2)[:4000], "truncated"),
    "path traversal": (_traversal(), "escap"),
    "empty": (b"", "DICOM"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_broken_uploads_are_refused_and_leave_nothing(
    client: TestClient, keys: dict[str, str], settings: Settings, case: str
) -> None:
    data, words = CASES[case]
    response = _post(client, keys["uploader"], data, name=f"{case}.zip")
    assert 400 <= response.status_code < 500, response.text
    assert words.lower() in response.json()["detail"].lower(), response.json()
    _nothing_stored(settings)


def test_a_zip_bomb_is_refused_before_it_is_inflated(
    client: TestClient, keys: dict[str, str], settings: Settings, zip_bomb: bytes
) -> None:
    response = _post(client, keys["uploader"], zip_bomb, name="bomb.zip")
    assert response.status_code == 422, response.text
    assert "limit" in response.json()["detail"]
    _nothing_stored(settings)


def test_an_upload_over_the_limit_is_refused_while_streaming(
    client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    """Sent in chunks without a Content-Length, so only counting the bytes as they arrive can
    stop it; the limit is 1 MB here and 3 MB are sent."""
    settings.max_upload_mb = 1
    from service.main import create_app

    sent = {"bytes": 0}

    def body() -> Iterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.dcm"\r\n\r\n'
        for _ in range(48):
            sent["bytes"] += 65536
            yield b"\0" * 65536
        yield b"\r\n--b--\r\n"

    with TestClient(create_app(settings)) as limited:
        response = limited.post(
            "/v1/studies",
            content=body(),
            headers={**auth(keys["uploader"]), "Content-Type": "multipart/form-data; boundary=b"},
        )
    assert response.status_code == 413, response.text
    assert "ECHOCXR_MAX_UPLOAD_MB" in response.json()["detail"]
    _nothing_stored(settings)


def test_a_declared_length_over_the_limit_is_refused_at_once(
    client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    settings.max_upload_mb = 1
    from service.main import create_app

    with TestClient(create_app(settings)) as limited:
        response = _post(limited, keys["uploader"], b"\0" * (2 * 1024 * 1024))
    assert response.status_code == 413
    _nothing_stored(settings)


def test_a_missing_file_field_is_a_422_naming_it(client: TestClient, keys: dict[str, str]) -> None:
    response = client.post("/v1/studies", data={"other": "x"}, headers=auth(keys["uploader"]))
    assert response.status_code == 422
    assert "file" in response.text


def test_refusals_log_no_identifying_data(
    client: TestClient, keys: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    import pydicom
    from pydicom.filebase import DicomBytesIO

    dataset = pydicom.dcmread(DicomBytesIO(phantom_bytes(3)))
    dataset.Modality = "CT"  # refused: not a radiograph
    buffer = DicomBytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    with caplog.at_level(logging.DEBUG):
        response = _post(client, keys["uploader"], buffer.getvalue())
    assert response.status_code == 422 and "(0008,0060) Modality" in response.json()["detail"]
    for value in (str(dataset.PatientName), str(dataset.PatientID), str(dataset.AccessionNumber)):
        assert value not in caplog.text and value not in response.text


def test_a_burst_of_concurrent_uploads_is_all_accepted(
    client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    """Forty clients at once, more than the database pool's connections: before, each request
    held a connection from its key check to its end and the burst ran the pool dry (500s)."""
    from concurrent.futures import ThreadPoolExecutor

    studies = [phantom_bytes(500 + i) for i in range(40)]
    with ThreadPoolExecutor(max_workers=len(studies)) as pool:
        answers = list(pool.map(lambda data: _post(client, keys["uploader"], data), studies))
    assert [a.status_code for a in answers] == [201] * len(studies), {a.text for a in answers}
    with session_scope(settings.sqlalchemy_url) as session:
        assert session.scalar(select(func.count()).select_from(Job)) == len(studies)
    assert client.get("/healthz").status_code == 200
