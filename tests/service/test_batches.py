"""Archives through the service, in the embedded pool: a server folder, an uploaded archive;
progress, failures by reason, labels, results as CSV, JSONL and ZIP; folders outside the
allowed roots and hostile archives refused; cancel, resume, and a batch that an API restart
resumes."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.main import create_app
from tests.support.archives import phantom_archive
from tests.support.service import auth, make_keys, wait_for_batch, zipped
from workers.config import Settings
from workers.db import session_scope
from workers.records import Batch, BatchItem

pytestmark = pytest.mark.integration


@pytest.fixture
def archives(tmp_path: Path) -> Path:
    return tmp_path / "archives"


@pytest.fixture
def batch_settings(settings: Settings, archives: Path) -> Settings:
    """The test's settings, reading archives under ``archives``, in chunks of 2 studies, with
    one reader process."""
    return settings.model_copy(
        update={"batch_roots": str(archives), "batch_chunk": 2, "batch_readers": 1}
    )


@pytest.fixture
def api(batch_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(batch_settings)) as client:
        yield client


def submit(client: TestClient, key: str, **form: str) -> dict:
    response = client.post("/v1/batches", data=form, headers=auth(key))
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_a_server_folder_is_drafted_with_its_failures_and_results(
    api: TestClient, batch_settings: Settings, archives: Path
) -> None:
    key = make_keys(batch_settings)["auditor"]
    phantom_archive(archives / "ward", 4)
    (archives / "ward" / "notes.txt").write_text("not a radiograph")
    created = submit(api, key, folder=str(archives / "ward"))
    assert created["total"] == 5 and created["source_kind"] == "folder"
    batch = wait_for_batch(api, key, created["id"])
    assert batch["state"] == "done"
    assert batch["counts"] == {"queued": 0, "running": 0, "done": 4, "failed": 1, "cancelled": 0}
    [reason] = batch["failures"]
    assert batch["failures"][reason] == 1
    assert sum(batch["labels"]["Cardiomegaly"].values()) == 4
    assert set(batch["seconds"]) == {"read_s", "model_s", "write_s"}
    drafted = [item for item in batch["items"] if item["state"] == "done"]
    assert all(item["findings"] and item["study_uid"] and item["attempts"] == 1 for item in drafted)

    table = api.get(f"/v1/batches/{created['id']}/results?format=csv", headers=auth(key))
    rows = list(csv.DictReader(io.StringIO(table.text)))
    assert [row["entry"] for row in rows] == sorted(p.name for p in (archives / "ward").iterdir())
    lines = api.get(f"/v1/batches/{created['id']}/results?format=jsonl", headers=auth(key))
    assert [json.loads(line)["state"] for line in lines.text.splitlines()].count("done") == 4
    bundle = api.get(f"/v1/batches/{created['id']}/results?format=zip", headers=auth(key))
    names = zipfile.ZipFile(io.BytesIO(bundle.content)).namelist()
    assert "results.csv" in names
    assert "study-0.dcm/report.sr.dcm" in names and "study-3.dcm/report.pdf.dcm" in names
    listed = api.get("/v1/batches", headers=auth(key)).json()
    assert [b["id"] for b in listed] == [created["id"]]


def test_a_batch_without_one_drafted_study_ends_failed(
    api: TestClient, batch_settings: Settings, archives: Path
) -> None:
    """Scripts read the state: an archive of unreadable files is not a finished run."""
    key = make_keys(batch_settings)["auditor"]
    (archives / "scans").mkdir(parents=True)
    for name in ("a.dcm", "b.dcm"):
        (archives / "scans" / name).write_bytes(b"DICM but not a DICOM file")
    batch = wait_for_batch(api, key, submit(api, key, folder=str(archives / "scans"))["id"])
    assert batch["state"] == "failed"
    assert batch["counts"]["failed"] == 2 and batch["counts"]["done"] == 0


def test_an_uploaded_archive_is_drafted(
    api: TestClient, batch_settings: Settings, tmp_path: Path
) -> None:
    """An archive holding one folder is that folder's studies (as a zipped export is)."""
    key = make_keys(batch_settings)["admin"]
    studies = phantom_archive(tmp_path / "export", 3)
    files = {f"export/{path.name}": path.read_bytes() for path in studies}
    response = api.post(
        "/v1/batches", files={"file": ("export.zip", zipped(files))}, headers=auth(key)
    )
    assert response.status_code == 201, response.text
    batch = wait_for_batch(api, key, response.json()["id"])
    assert batch["counts"]["done"] == 3 and batch["source"] == "export.zip"


@pytest.mark.parametrize(
    ("form", "files", "words"),
    [
        ({"folder": "/etc"}, None, "ECHOCXR_BATCH_ROOTS"),
        ({}, None, "exactly one source"),
        ({}, {"../escape.dcm": b"x"}, "escapes its folder"),
        ({}, {"a/.hidden": b"x"}, "holds no studies"),
    ],
)
def test_sources_that_cannot_be_a_batch_are_refused_leaving_nothing(
    api: TestClient,
    batch_settings: Settings,
    form: dict[str, str],
    files: dict[str, bytes] | None,
    words: str,
) -> None:
    key = make_keys(batch_settings)["auditor"]
    upload = {"file": ("a.zip", zipped(files))} if files else None
    response = api.post("/v1/batches", data=form, files=upload, headers=auth(key))
    assert response.status_code == 422 and words in response.json()["detail"], response.text
    with session_scope(batch_settings.sqlalchemy_url) as session:
        assert session.scalar(select(func.count()).select_from(Batch)) == 0
    assert not any(batch_settings.batches_dir.glob("*/input"))


def test_cancel_resume_and_an_api_restart_finish_the_batch(
    batch_settings: Settings, archives: Path
) -> None:
    """With the broker unreachable the chunks stay queued in the records: cancelled, resumed,
    then an API in the embedded mode hands them over at start and drafts every study once."""
    key = make_keys(batch_settings)["auditor"]
    phantom_archive(archives / "night", 5)
    offline = batch_settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(offline)) as client:
        created = submit(client, key, folder=str(archives / "night"))
        cancelled = client.post(f"/v1/batches/{created['id']}/cancel", headers=auth(key))
        assert cancelled.json()["state"] == "cancelled"
        assert cancelled.json()["counts"] == {"cancelled": 5}
        again = client.post(f"/v1/batches/{created['id']}/cancel", headers=auth(key))
        assert again.status_code == 409
        resumed = client.post(f"/v1/batches/{created['id']}/resume", headers=auth(key))
        assert resumed.json()["state"] == "queued" and resumed.json()["counts"] == {"queued": 5}
    with TestClient(create_app(batch_settings)) as client:
        batch = wait_for_batch(client, key, created["id"])
    assert batch["state"] == "done" and batch["counts"]["done"] == 5
    with session_scope(batch_settings.sqlalchemy_url) as session:
        attempts = session.scalars(select(BatchItem.attempts)).all()
    assert list(attempts) == [1] * 5
