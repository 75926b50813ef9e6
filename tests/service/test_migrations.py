"""The schema comes from the Alembic migrations, up and down, on SQLite and PostgreSQL, and the
migrations match the tables the code declares."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import inspect

import service.models  # noqa: F401  (the service's tables on the shared Base)
from service.database import current_revision, downgrade, head_revision, upgrade
from service.main import create_app
from workers.config import Settings
from workers.db import get_engine
from workers.records import Base

pytestmark = pytest.mark.integration

TABLES = {
    "studies",
    "study_files",
    "jobs",
    "reports",
    "signoffs",
    "users",
    "api_keys",
    "audit_events",
    "pushes",
    "web_sessions",
    "audit_runs",
    "batches",
    "batch_items",
}


def _tables(settings: Settings) -> set[str]:
    return set(inspect(get_engine(settings.sqlalchemy_url)).get_table_names()) - {"alembic_version"}


def test_migrations_go_down_to_nothing_and_up_again(settings: Settings) -> None:
    assert current_revision(settings) == head_revision(settings)
    assert _tables(settings) == TABLES
    downgrade(settings, "base")
    assert _tables(settings) == set() and current_revision(settings) is None
    upgrade(settings)
    assert _tables(settings) == TABLES


def test_the_migrations_match_the_declared_tables(settings: Settings) -> None:
    """A column added to a table without a migration is caught here, not in production."""
    with get_engine(settings.sqlalchemy_url).connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_readiness_says_when_the_schema_is_behind(settings: Settings) -> None:
    downgrade(settings, "base")
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert "echocxr db upgrade" in response.json()["checks"]["database"]
