"""Engine and session factory; one engine per database URL per process.

Forked worker processes must not share pooled connections, so the cache is keyed by URL and
process id (the Celery pattern in STYLE.md section 6). The schema is made by the Alembic
migrations (``echocxr db upgrade``; ``echocxr serve`` runs them first), never by ``create_all``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker


@lru_cache
def _engine(url: str, pid: int) -> Engine:
    del pid  # part of the cache key only
    if url.startswith("sqlite"):
        # a writer waits up to 30 s for another's transaction instead of failing at once: the
        # API's threads and the embedded pool write the same file
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    return engine


def _sqlite_pragmas(connection: object, _record: object) -> None:
    cursor = connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def get_engine(url: str) -> Engine:
    return _engine(url, os.getpid())


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error: no half-written records."""
    session = sessionmaker(get_engine(url), expire_on_commit=False)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
