"""Keys and roles: no /v1 route answers without a key, each route only to its roles, every
access and refusal in the audit trail, and the `echocxr users` commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from service.cli import app as cli
from service.models import AuditEvent
from tests.support.service import auth, phantom_bytes, upload, wait_for_job
from workers.config import Settings
from workers.db import session_scope

pytestmark = pytest.mark.integration

# who may do what: the contract of issue 29, written out here rather than read from the code
ALLOWED = {
    ("POST", "/v1/studies"): {"uploader", "radiologist", "admin"},
    ("GET", "/v1/studies"): {"radiologist", "auditor", "admin"},
    ("GET", "/v1/studies/{study_id}"): {"uploader", "radiologist", "auditor", "admin"},
    ("GET", "/v1/studies/{study_id}/reports"): {"radiologist", "auditor", "admin"},
    ("POST", "/v1/studies/{study_id}/ask"): {"radiologist"},
    ("GET", "/v1/jobs/{job_id}"): {"uploader", "radiologist", "auditor", "admin"},
    ("POST", "/v1/jobs/{job_id}/cancel"): {"uploader", "radiologist", "admin"},
    ("GET", "/v1/reports/{report_id}"): {"radiologist", "auditor", "admin"},
    ("GET", "/v1/worklist"): {"radiologist", "admin"},
    ("POST", "/v1/reports/{report_id}/sign"): {"radiologist"},
    ("POST", "/v1/pacs/notify"): {"uploader", "admin"},
    ("POST", "/dicomweb/studies"): {"uploader", "admin"},
    ("POST", "/v1/batches"): {"auditor", "admin"},
    ("GET", "/v1/batches"): {"auditor", "admin"},
    ("GET", "/v1/batches/{batch_id}"): {"auditor", "admin"},
    ("POST", "/v1/batches/{batch_id}/cancel"): {"auditor", "admin"},
    ("POST", "/v1/batches/{batch_id}/resume"): {"auditor", "admin"},
    ("GET", "/v1/batches/{batch_id}/results"): {"auditor", "admin"},
}
OPEN = {"/healthz", "/readyz", "/metrics"}  # no key: they carry no study data


def _keyed_routes(client: TestClient) -> list[tuple[str, str]]:
    """Every operation of the app's OpenAPI schema but the open ones (FastAPI's own list of
    routes nests included routers, so the schema is the reliable inventory)."""
    paths = client.app.openapi()["paths"]  # type: ignore[attr-defined]
    return [(m.upper(), p) for p, ops in paths.items() if p not in OPEN for m in ops]


def test_every_keyed_route_is_in_the_role_table(client: TestClient) -> None:
    """A route added without deciding who may use it fails here; so does a table that lost
    track of the app (the inventory is not empty and covers the table)."""
    routes = set(_keyed_routes(client))
    assert routes == set(ALLOWED), (routes - set(ALLOWED), set(ALLOWED) - routes)


@pytest.mark.parametrize("header", [None, "Bearer ecx_not-a-key", "Basic dXNlcjpwYXNz"])
def test_no_v1_route_answers_without_a_valid_key(
    client: TestClient, keys: dict[str, str], header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header}
    routes = _keyed_routes(client)
    assert len(routes) == len(ALLOWED)
    for method, path in routes:
        url = re.sub(r"\{[^}]+\}", "0" * 32, path)
        response = client.request(method, url, headers=headers)
        assert response.status_code == 401, (method, path, response.text)
        assert "echocxr users add" in response.json()["detail"]


def test_each_role_is_refused_where_it_does_not_belong(
    client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    study = upload(client, keys["uploader"], phantom_bytes(11))
    job = wait_for_job(client, keys["uploader"], study["job"]["id"])
    ids = {
        "study_id": study["id"],
        "job_id": job["id"],
        "report_id": job["report_id"],
        "batch_id": "0" * 32,
    }
    for (method, path), roles in ALLOWED.items():
        url = path.format(**ids)
        for role, key in keys.items():
            response = client.request(
                method, url, headers=auth(key), json={"question": "Is the heart enlarged?"}
            )
            if role in roles:
                assert response.status_code != 403, (role, method, path, response.text)
            else:
                assert response.status_code == 403, (role, method, path, response.status_code)
                assert role in response.json()["detail"]
    with session_scope(settings.sqlalchemy_url) as session:
        refusals = session.scalars(select(AuditEvent).where(AuditEvent.outcome == 403)).all()
        expected = sum(len(set(keys) - roles) for roles in ALLOWED.values())
        assert len(refusals) == expected
        assert all(event.user_name and event.client for event in refusals)


def test_reads_and_writes_of_studies_and_reports_are_audit_events(
    client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    study = upload(client, keys["radiologist"], phantom_bytes(12))
    job = wait_for_job(client, keys["radiologist"], study["job"]["id"])
    client.get(f"/v1/studies/{study['id']}", headers=auth(keys["auditor"]))
    client.get(f"/v1/reports/{job['report_id']}?format=pdf", headers=auth(keys["auditor"]))
    with session_scope(settings.sqlalchemy_url) as session:
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        trail = [(e.user_name, e.action, e.resource_id) for e in events]
    assert ("Test Radiologist", "study.upload", study["id"]) in trail
    assert ("Test Auditor", "study.read", study["id"]) in trail
    assert ("Test Auditor", "report.read.pdf", job["report_id"]) in trail
    assert all(e.client == "testclient" and e.at.tzinfo is not None for e in events)


def test_the_uploader_sees_no_patient_identifiers(client: TestClient, keys: dict[str, str]) -> None:
    import pydicom
    from pydicom.filebase import DicomBytesIO

    data = phantom_bytes(13)
    header = pydicom.dcmread(DicomBytesIO(data), stop_before_pixels=True)
    uploaded = client.post(
        "/v1/studies", files={"file": ("a.dcm", data)}, headers=auth(keys["uploader"])
    )
    study_id = uploaded.json()["id"]
    as_uploader = client.get(f"/v1/studies/{study_id}", headers=auth(keys["uploader"]))
    as_reader = client.get(f"/v1/studies/{study_id}", headers=auth(keys["radiologist"]))
    for text in (uploaded.text, as_uploader.text):
        assert str(header.PatientName) not in text and str(header.PatientID) not in text
    assert as_reader.json()["identifiers"]["PatientID"] == str(header.PatientID)


def test_users_commands_add_list_and_revoke(tmp_path: Path) -> None:
    env = {"ECHOCXR_DATA_DIR": str(tmp_path / "cli-data")}
    runner = CliRunner()
    added = runner.invoke(cli, ["users", "add", "Dr Grey", "--role", "radiologist"], env=env)
    assert added.exit_code == 0, added.output
    key = added.output.strip().splitlines()[-1]
    assert key.startswith("ecx_") and len(key) > 40
    listed = runner.invoke(cli, ["users", "list"], env=env)
    assert "Dr Grey\tradiologist" in listed.output and key not in listed.output
    wrong = runner.invoke(cli, ["users", "add", "Dr Blue", "--role", "surgeon"], env=env)
    assert wrong.exit_code == 2 and "uploader, radiologist, auditor, admin" in wrong.output
    taken = runner.invoke(cli, ["users", "add", "Dr Grey", "--role", "admin"], env=env)
    assert taken.exit_code == 2 and "exists" in taken.output

    from service.main import create_app

    settings = Settings(data_dir=tmp_path / "cli-data")
    with TestClient(create_app(settings)) as served:
        assert served.get("/v1/worklist", headers=auth(key)).status_code == 200
        revoked = runner.invoke(cli, ["users", "revoke", "Dr Grey"], env=env)
        assert revoked.exit_code == 0, revoked.output
        assert served.get("/v1/worklist", headers=auth(key)).status_code == 401
    assert "revoked" in runner.invoke(cli, ["users", "list"], env=env).output
