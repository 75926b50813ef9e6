"""Health reports the real database; every resource route demands the bearer token."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from workers.config import Settings, get_settings

pytestmark = pytest.mark.integration


def test_health_names_the_database_it_reached(client: TestClient, settings: Settings) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    expected = "sqlite" if settings.sqlalchemy_url.startswith("sqlite") else "postgresql"
    assert response.json() == {"status": "ok", "database": expected}


def test_missing_token_is_refused(client: TestClient) -> None:
    response = client.get("/v1/studies", headers={"Authorization": ""})
    assert response.status_code == 401
    assert "token" in response.json()["detail"]


def test_wrong_token_is_refused(client: TestClient) -> None:
    response = client.get("/v1/studies", headers={"Authorization": "Bearer not-the-token"})
    assert response.status_code == 401


def test_right_token_lists_studies(client: TestClient) -> None:
    response = client.get("/v1/studies")
    assert response.status_code == 200
    assert response.json() == []


def test_settings_pin_the_psycopg_driver() -> None:
    settings = Settings(database_url="postgres://u@h:5432/db")
    assert settings.sqlalchemy_url == "postgresql+psycopg://u@h:5432/db"


@pytest.mark.parametrize(("peer", "expected"), [("127.0.0.1", 200), ("192.0.2.10", 403)])
def test_without_a_token_only_loopback_clients_are_served(
    tmp_path: Path, peer: str, expected: int
) -> None:
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: Settings(data_dir=tmp_path)
    with TestClient(app, client=(peer, 50000)) as client:
        response = client.get("/v1/studies")
    assert response.status_code == expected
    if expected == 403:
        assert "ECHOCXR_API_TOKEN" in response.json()["detail"]
