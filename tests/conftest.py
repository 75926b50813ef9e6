"""Fixtures for the real components the tests use (see ``tests/support``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.components import ensure_postgres, ensure_redis, require_tool
from tests.support.orthanc import OrthancServer, running_orthanc


@pytest.fixture(scope="session")
def redis_url() -> str:
    return ensure_redis()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return ensure_postgres()


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    with running_orthanc(tmp_path_factory.mktemp("orthanc")) as server:
        yield server


@pytest.fixture(scope="session")
def dciodvfy() -> str:
    return require_tool("dciodvfy")


@pytest.fixture(scope="session")
def dcmdump() -> str:
    return require_tool("dcmdump")


@pytest.fixture(scope="session")
def dsrdump() -> str:
    return require_tool("dsrdump")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
