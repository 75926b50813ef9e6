"""Alembic's environment: the tables of ``workers.records`` and ``service.models``, one history.

The URL comes from the Alembic config, set by ``service.database`` from ``Settings``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

import service.models  # noqa: F401  (registers the service's tables on the shared Base)
from workers.db import get_engine
from workers.records import Base


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters by copying
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


url = context.config.get_main_option("sqlalchemy.url")
assert url, "service.database sets sqlalchemy.url"
with get_engine(url).connect() as connection:
    run(connection)
