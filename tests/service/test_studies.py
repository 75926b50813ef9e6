"""Uploading studies through the API: phantom DICOM in, a record out; bad input loses nothing."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from model.data.phantom import sample_case
from model.data.phantom.dicom_export import write_dicom
from workers.config import Settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def phantom_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    case = sample_case(0, 3)
    return write_dicom(case, tmp_path_factory.mktemp("phantom") / "image.dcm", downscale=4)


def _stored_folders(settings: Settings) -> list[Path]:
    if not settings.studies_dir.exists():
        return []
    return sorted(settings.studies_dir.iterdir())


def test_upload_records_what_was_read(
    client: TestClient, settings: Settings, phantom_file: Path
) -> None:
    response = client.post("/v1/studies", files={"file": ("image.dcm", phantom_file.read_bytes())})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["frontal_count"] == 1
    assert body["summary"]["frontal_images"][0]["view_position"] in {"PA", "AP"}
    assert [p.name for p in _stored_folders(settings)] == [body["id"]]
    fetched = client.get(f"/v1/studies/{body['id']}").json()
    assert fetched["study_instance_uid"] == body["study_instance_uid"]
    assert [s["id"] for s in client.get("/v1/studies").json()] == [body["id"]]


def test_upload_of_an_archive(client: TestClient, phantom_file: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.write(phantom_file, "study/image.dcm")
    response = client.post("/v1/studies", files={"file": ("study.zip", buffer.getvalue())})
    assert response.status_code == 201, response.text
    assert response.json()["frontal_count"] == 1


def test_response_carries_no_patient_data(client: TestClient, phantom_file: Path) -> None:
    import pydicom

    header = pydicom.dcmread(phantom_file, stop_before_pixels=True)
    response = client.post("/v1/studies", files={"file": ("image.dcm", phantom_file.read_bytes())})
    text = response.text
    for value in (str(header.PatientName), str(header.PatientID), str(header.AccessionNumber)):
        assert value and value not in text


@pytest.mark.parametrize(("damage", "words"), [("not-dicom", "DICOM"), ("cut", "truncated")])
def test_bad_upload_is_refused_with_its_reason_and_leaves_nothing(
    client: TestClient, settings: Settings, phantom_file: Path, damage: str, words: str
) -> None:
    data = phantom_file.read_bytes()
    payload = b"not a DICOM file" if damage == "not-dicom" else data[: len(data) // 2]
    response = client.post("/v1/studies", files={"file": ("bad.dcm", payload)})
    assert response.status_code == 422
    assert words.lower() in response.json()["detail"].lower()
    assert _stored_folders(settings) == []
    assert client.get("/v1/studies").json() == []


def test_oversized_upload_is_refused_before_reading(
    client: TestClient, settings: Settings, phantom_file: Path
) -> None:
    settings.max_upload_mb = 1
    response = client.post("/v1/studies", files={"file": ("big.dcm", b"\0" * (1024 * 1024 + 1))})
    assert response.status_code == 413
    assert "ECHOCXR_MAX_UPLOAD_MB" in response.json()["detail"]
    assert _stored_folders(settings) == []


def test_unknown_study_is_404(client: TestClient) -> None:
    assert client.get("/v1/studies/does-not-exist").status_code == 404
