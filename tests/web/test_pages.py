"""The workspace over HTTP (no browser): who may open what, sessions and their end, CSRF, the
CSP, the audit trail of views, audits of signed drafts, and bad input refused with nothing kept."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from model.trust import Trust
from service.main import create_app
from service.models import AuditEvent, AuditRun
from service.users import revoke_user
from service.web.pages import CSP
from tests.support.service import auth, phantom_bytes, upload, wait_for_job
from workers.audits import audit_folder
from workers.config import Settings
from workers.db import session_scope
from workers.records import Report

pytestmark = pytest.mark.integration

HTML = {"Accept": "text/html"}
READERS = {"radiologist", "auditor", "admin"}
ALLOWED = {
    ("GET", "/app/worklist"): {"radiologist", "admin"},
    ("GET", "/app/upload"): {"uploader", "radiologist", "admin"},
    ("POST", "/app/upload"): {"uploader", "radiologist", "admin"},
    ("GET", "/app/studies/{study_id}"): READERS,
    ("GET", "/app/studies/{study_id}/image"): READERS,
    ("GET", "/app/studies/{study_id}/state"): READERS,
    ("POST", "/app/studies/{study_id}/ask"): {"radiologist"},
    ("POST", "/app/reports/{report_id}/sign"): {"radiologist"},
    ("GET", "/app/reports/{report_id}/download"): READERS,
    ("GET", "/app/audits"): {"auditor", "admin"},
    ("POST", "/app/audits"): {"auditor", "admin"},
    ("GET", "/app/audits/{run_id}"): {"auditor", "admin"},
    ("GET", "/app/audits/{run_id}/state"): {"auditor", "admin"},
    ("GET", "/app/audits/{run_id}/report.html"): {"auditor", "admin"},
    ("GET", "/app/archives"): {"auditor", "admin"},
    ("POST", "/app/archives"): {"auditor", "admin"},
    ("GET", "/app/archives/{batch_id}"): {"auditor", "admin"},
    ("GET", "/app/archives/{batch_id}/state"): {"auditor", "admin"},
    ("GET", "/app/archives/{batch_id}/results"): {"auditor", "admin"},
    ("POST", "/app/archives/{batch_id}/cancel"): {"auditor", "admin"},
    ("POST", "/app/archives/{batch_id}/resume"): {"auditor", "admin"},
    ("GET", "/app/admin"): {"admin"},
}
OPEN_TO_ALL = {
    ("GET", "/app/"),
    ("GET", "/app/login"),
    ("POST", "/app/login"),
    ("POST", "/app/logout"),
}


@pytest.fixture
def app_client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def log_in(client: TestClient, key: str) -> str:
    """Log the client in with ``key``; returns the session's CSRF token."""
    response = client.post("/app/login", data={"api_key": key}, headers=HTML)
    assert response.status_code == 200, response.text
    return re.search(r'data-csrf="([^"]+)"', response.text).group(1)  # type: ignore[union-attr]


def _app_routes(client: TestClient) -> set[tuple[str, str]]:
    """(method, path) of every workspace route. FastAPI 0.16x keeps included routers whole
    (``_IncludedRouter``), so ``app.routes`` alone would list none of them."""
    found = set()
    for route in client.app.routes:  # type: ignore[attr-defined]
        contexts = getattr(route, "effective_route_contexts", lambda r=route: [r])()
        for context in contexts:
            methods = getattr(getattr(context, "original_route", context), "methods", None)
            found |= {(method, context.path) for method in methods or ()}
    return {(method, path) for method, path in found if path.startswith("/app")}


def test_every_page_is_in_the_role_table(app_client: TestClient) -> None:
    """A page added without deciding who may open it fails here."""
    assert _app_routes(app_client) == set(ALLOWED) | OPEN_TO_ALL


def _events(settings: Settings, action: str) -> list[AuditEvent]:
    with session_scope(settings.sqlalchemy_url) as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_each_role_opens_its_pages_and_is_refused_elsewhere(
    app_client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    study = upload(app_client, keys["radiologist"], phantom_bytes(12))
    job = wait_for_job(app_client, keys["radiologist"], study["job"]["id"])
    ids = {
        "study_id": study["id"],
        "report_id": job["report_id"],
        "run_id": "0" * 32,
        "batch_id": "0" * 32,
    }
    for role, key in keys.items():
        app_client.cookies.clear()
        csrf = log_in(app_client, key)
        for (method, path), roles in ALLOWED.items():
            url = path.format(**ids)
            response = app_client.request(method, url, headers={**HTML, "X-CSRF-Token": csrf})
            if role in roles:
                assert response.status_code != 403, (role, method, path)
            else:
                assert response.status_code == 403, (role, method, path, response.status_code)
                assert f"The {role} role cannot open this page" in response.text
    refusals = [e for e in _events(settings, "GET /app/admin") if e.outcome == 403]
    assert {e.user_name for e in refusals} == {"Test Uploader", "Test Radiologist", "Test Auditor"}


def test_pages_need_a_session_and_a_revoked_user_loses_theirs(
    app_client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    page = app_client.get("/app/worklist?state=all", headers=HTML, follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/app/login?next=%2Fapp%2Fworklist%3Fstate%3Dall"
    assert app_client.get("/app/studies/x/state").status_code == 401

    wrong = app_client.post("/app/login", data={"api_key": "ecx_wrong"}, headers=HTML)
    assert wrong.status_code == 401 and "unknown or revoked" in wrong.text
    assert [e.outcome for e in _events(settings, "POST /app/login")] == [401]

    log_in(app_client, keys["radiologist"])
    cookie = app_client.cookies.get("echocxr_session")
    assert cookie and app_client.get("/app/worklist", headers=HTML).status_code == 200
    assert [e.user_name for e in _events(settings, "web.login")] == ["Test Radiologist"]
    with session_scope(settings.sqlalchemy_url) as session:
        revoke_user(session, "Test Radiologist")
    after = app_client.get("/app/worklist", headers=HTML, follow_redirects=False)
    assert after.status_code == 303 and after.headers["location"].startswith("/app/login")


def test_logging_out_ends_the_session(app_client: TestClient, keys: dict[str, str]) -> None:
    csrf = log_in(app_client, keys["admin"])
    token = app_client.cookies.get("echocxr_session")
    assert app_client.post("/app/logout", data={"csrf_token": "forged"}).status_code == 403
    assert app_client.get("/app/admin", headers=HTML).status_code == 200
    app_client.post("/app/logout", data={"csrf_token": csrf}, headers=HTML)
    app_client.cookies.set("echocxr_session", token or "", path="/app")
    gone = app_client.get("/app/admin", headers=HTML, follow_redirects=False)
    assert gone.status_code == 303


def test_a_form_without_the_session_token_changes_nothing(
    app_client: TestClient, keys: dict[str, str]
) -> None:
    key = keys["radiologist"]
    study = upload(app_client, key, phantom_bytes(13))
    draft_id = wait_for_job(app_client, key, study["job"]["id"])["report_id"]
    log_in(app_client, key)
    text = {"findings": "Forged.", "impression": "Forged.", "alerts_read": "true"}
    for token in ({}, {"csrf_token": "not-the-token"}):
        response = app_client.post(f"/app/reports/{draft_id}/sign", data={**text, **token})
        assert response.status_code == 403
    versions = app_client.get(f"/v1/studies/{study['id']}/reports", headers=auth(key)).json()
    assert [v["kind"] for v in versions] == ["draft"]


def test_pages_carry_the_csp_and_views_are_audit_events(
    app_client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    key = keys["radiologist"]
    study = upload(app_client, key, phantom_bytes(14))
    wait_for_job(app_client, key, study["job"]["id"])
    log_in(app_client, key)
    for url in ("/app/worklist", f"/app/studies/{study['id']}", "/app/login"):
        response = app_client.get(url, headers=HTML)
        assert response.status_code == 200
        assert response.headers["content-security-policy"] == CSP
        assert response.headers["cache-control"] == "no-store"
        assert "<script>" not in response.text and " on" + "click=" not in response.text
    image = app_client.get(f"/app/studies/{study['id']}/image?wc=500&ww=1000&side=512")
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    half = app_client.get(f"/app/studies/{study['id']}/image?wc=500")
    assert half.status_code == 422 and "both wc and ww" in half.json()["detail"]
    # the worklist twice: the page logging in lands on, then the one asked for
    for action, count in (("web.worklist", 2), ("web.study", 1), ("study.image", 1)):
        events = _events(settings, action)
        assert [(e.user_name, e.outcome) for e in events] == [("Test Radiologist", 200)] * count
    assert _events(settings, "web.study")[0].resource_id == study["id"]


def _wait_for_audit(client: TestClient, run_id: str, seconds: float = 120) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = dict(client.get(f"/app/audits/{run_id}/state").json())
        if state["state"] in ("done", "failed"):
            return state
        time.sleep(0.2)
    pytest.fail(f"audit {run_id} did not finish in {seconds} s")


def test_an_audit_of_the_drafts_signed_in_a_period(
    app_client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    key = keys["radiologist"]
    for index in (15, 16):
        study = upload(app_client, key, phantom_bytes(index))
        draft = wait_for_job(app_client, key, study["job"]["id"])["report_id"]
        body = {"findings": "Small left pleural effusion.", "impression": "Pleural effusion."}
        signed = app_client.post(f"/v1/reports/{draft}/sign", json=body, headers=auth(key))
        assert signed.status_code == 201
    csrf = log_in(app_client, keys["auditor"])
    today = time.strftime("%Y-%m-%d", time.gmtime())
    form = {
        "csrf_token": csrf,
        "source": "signed",
        "first": today,
        "last": today,
        "metrics": ["labels", "rouge_l"],
    }
    started = app_client.post("/app/audits", data=form, headers=HTML, follow_redirects=False)
    assert started.status_code == 303, started.text
    run_id = started.headers["location"].rsplit("/", 1)[1]
    assert _wait_for_audit(app_client, run_id)["state"] == "done"
    lines = (audit_folder(settings, run_id) / "input.csv").read_text().splitlines()
    assert lines[0] == "study_id,generated,reference" and len(lines) > 2
    page = app_client.get(f"/app/audits/{run_id}", headers=HTML)
    assert "Label F1, micro, 14 findings" in page.text and "/app/studies/" in page.text
    report = app_client.get(f"/app/audits/{run_id}/report.html")
    assert report.headers["content-security-policy"].startswith("default-src 'none'")
    assert "data:image/png;base64," in report.text
    assert [e.outcome for e in _events(settings, "audit.start")] == [201]


@pytest.mark.parametrize(
    ("form", "upload_text", "message"),
    [
        ({"source": "signed", "first": "2001-01-02", "last": "2001-01-01"}, None, "swap"),
        ({"source": "signed", "first": "2001-01-01", "last": "2001-01-02"}, None, "no draft"),
        ({"source": "csv"}, None, "choose a CSV"),
        ({"source": "csv"}, "study_id,generated\ns1,No effusion.\n", "reference"),
        (
            {
                "source": "signed",
                "first": "2001-01-01",
                "last": "2001-01-02",
                "metrics": ["labels", "nonsense"],
            },
            None,
            "nonsense",
        ),
    ],
)
def test_an_audit_that_cannot_run_is_explained_and_leaves_nothing(
    app_client: TestClient,
    keys: dict[str, str],
    settings: Settings,
    form: dict,
    upload_text: str | None,
    message: str,
) -> None:
    csrf = log_in(app_client, keys["auditor"])
    files = {"file": ("drafts.csv", upload_text.encode())} if upload_text else None
    data = {"csrf_token": csrf, "metrics": ["labels"], **form}
    response = app_client.post("/app/audits", data=data, files=files, headers=HTML)
    assert response.status_code == 422
    assert message in response.text
    with session_scope(settings.sqlalchemy_url) as session:
        assert session.scalars(select(AuditRun)).all() == []
    audits = Path(settings.data_dir) / "audits"
    assert not audits.exists() or list(audits.iterdir()) == []


def test_a_draft_with_warnings_signs_only_once_they_are_acknowledged(
    app_client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    key = keys["radiologist"]
    study = upload(app_client, key, phantom_bytes(17))
    draft_id = wait_for_job(app_client, key, study["job"]["id"])["report_id"]
    with session_scope(settings.sqlalchemy_url) as session:
        draft = session.get(Report, draft_id)
        assert draft is not None
        draft.trust = Trust(  # the signals of a checkpoint with trust statistics
            finding_probabilities={"Pneumothorax": 0.9},
            ood_score=1.0,
            ood_threshold=4.0,
            critical_findings=["Pneumothorax"],
        ).to_json()
    csrf = log_in(app_client, key)
    page = app_client.get(f"/app/studies/{study['id']}", headers=HTML)
    assert "Suspected critical finding: Pneumothorax" in page.text
    text = {"csrf_token": csrf, "findings": "Tiny apical pneumothorax.", "impression": "Edited."}
    refused = app_client.post(f"/app/reports/{draft_id}/sign", data=text, headers=HTML)
    assert refused.status_code == 422 and "I have read the warnings" in refused.text
    assert "Tiny apical pneumothorax." in refused.text  # the edit is kept, not lost
    versions = app_client.get(f"/v1/studies/{study['id']}/reports", headers=auth(key)).json()
    assert [v["kind"] for v in versions] == ["draft"]
    signed = app_client.post(
        f"/app/reports/{draft_id}/sign",
        data={**text, "alerts_read": "true"},
        headers=HTML,
        follow_redirects=False,
    )
    assert signed.status_code == 303
    versions = app_client.get(f"/v1/studies/{study['id']}/reports", headers=auth(key)).json()
    newest = versions[0]
    assert (newest["kind"], newest["findings"]) == ("signed", "Tiny apical pneumothorax.")


def test_a_form_from_another_site_is_refused(app_client: TestClient, keys: dict[str, str]) -> None:
    forged = app_client.post(
        "/app/login",
        data={"api_key": keys["radiologist"]},
        headers={**HTML, "Origin": "https://elsewhere.example"},
    )
    assert forged.status_code == 403 and "echocxr_session" not in app_client.cookies
    assert log_in(app_client, keys["radiologist"])  # the same form from the service's own page


def test_uploads_that_are_not_studies_are_refused_and_the_worklist_pages(
    app_client: TestClient, keys: dict[str, str]
) -> None:
    for index in (18, 19):
        upload(app_client, keys["uploader"], phantom_bytes(index))
    csrf = log_in(app_client, keys["radiologist"])
    refused = app_client.post(
        "/app/upload",
        data={"csrf_token": csrf, "priority": "routine"},
        files={"file": ("notes.txt", b"not a DICOM file at all")},
        headers=HTML,
    )
    assert refused.status_code == 422 and "DICOM" in refused.text
    studies = app_client.get("/v1/studies", headers=auth(keys["radiologist"])).json()
    assert len(studies) == 2
    first = app_client.get("/app/worklist?state=all&limit=1", headers=HTML)
    assert "The first 1 of 2 studies" in first.text
    assert first.text.count('class="row-link"') == 1
