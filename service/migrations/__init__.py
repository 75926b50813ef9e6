"""Alembic migrations of the database: ``echocxr db upgrade`` (``service.database``)."""
