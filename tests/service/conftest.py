"""The API on a fresh data folder, against SQLite or the real PostgreSQL, drafting in its
embedded pool with the shipped model; keys for a user of every role."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from tests.support.service import database_settings, make_keys
from workers.config import Settings


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    postgres = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    with database_settings(request.param, tmp_path / "data", postgres) as configured:
        yield configured


@pytest.fixture
def keys(settings: Settings) -> dict[str, str]:
    return make_keys(settings)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client
