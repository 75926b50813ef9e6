"""Schemathesis against the app's own OpenAPI: whatever a client sends, the answer is never a 5xx
and always matches the documented schema's status codes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from service.main import create_app
from tests.support.service import auth, database_settings, make_keys, phantom_bytes, upload

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FastAPI, dict[str, str]]]:
    """One app on SQLite with a drafted study in it, so ids in paths can also hit real records."""
    with database_settings("sqlite", tmp_path_factory.mktemp("fuzz"), None) as configured:
        app = create_app(configured)
        with TestClient(app) as client:
            keys = make_keys(configured)
            upload(client, keys["radiologist"], phantom_bytes(40))
            yield app, keys


def test_no_request_gets_a_server_error(served: tuple[FastAPI, dict[str, str]]) -> None:
    """Every operation, 25 generated requests each, with a key that passes the role check (so the
    requests reach the handlers rather than stop at 403)."""
    app, keys = served
    api = schemathesis.openapi.from_asgi("/openapi.json", app)
    for result in api.get_all_operations():
        operation = result.ok()
        if operation.path.startswith("/dicomweb"):
            continue  # multipart/related bodies cannot be generated; tests/pacs send bad ones
        clinical = operation.path.endswith(("/ask", "/sign"))
        fuzz(operation, auth(keys["radiologist"] if clinical else keys["admin"]))


def fuzz(operation: schemathesis.APIOperation, headers: dict[str, str]) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def check(case: schemathesis.Case) -> None:
        response = case.call(headers=headers)
        assert response.status_code < 500, (case.method, case.path, response.text)

    check()


def test_the_schema_documents_every_route(served: tuple[FastAPI, dict[str, str]]) -> None:
    paths = served[0].openapi()["paths"]
    for path in (
        "/v1/studies",
        "/v1/jobs/{job_id}",
        "/v1/reports/{report_id}/sign",
        "/v1/worklist",
    ):
        assert path in paths
