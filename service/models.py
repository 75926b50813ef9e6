"""The service's own tables: users, their API keys, and the audit trail.

The pipeline's records (studies, jobs, reports, sign-offs) are in ``workers.records``, on the
same ``Base``, because the workers write them. Pydantic schemas for the API live apart, in
``service.schemas``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from workers.records import Base, new_id, now

UPLOADER, RADIOLOGIST, AUDITOR, ADMIN = "uploader", "radiologist", "auditor", "admin"
ROLES = (UPLOADER, RADIOLOGIST, AUDITOR, ADMIN)


class User(Base):
    """Someone (or a script) the service answers; ``role`` decides which routes."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=now)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)


class ApiKey(Base):
    """A bearer key, kept only as its SHA-256: the key itself is shown once, at creation.

    Keys are 256 random bits, so a plain hash is enough (no salt or slow hash is needed
    against guessing, unlike a password).
    """

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=now)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)


class AuditEvent(Base):
    """Who did what to which study or report, when, and from where; refusals too.

    ``action`` is a verb on a resource (``study.upload``, ``report.read``, ``report.sign``…);
    ``outcome`` the HTTP status answered.
    """

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=now, index=True)
    user_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    user_name: Mapped[str | None] = mapped_column(String(128), nullable=True)
    action: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    client: Mapped[str | None] = mapped_column(String(64), nullable=True)
    outcome: Mapped[int] = mapped_column(Integer)


class WebSession(Base):
    """A browser's login to the workspace (``service.web``).

    The cookie holds a random token and the table only its SHA-256, as for API keys. A session
    is opened with an API key and ends with it: revoking the key or the user ends every session
    it opened at the next request. ``csrf_token`` is echoed by every form and script request.
    """

    __tablename__ = "web_sessions"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=now)
    expires_at: Mapped[datetime] = mapped_column()


class AuditRun(Base):
    """An audit asked for in the workspace: who asked, over which set, with which metrics.

    Its input, progress and outcome are files in its folder (``service.web.audit_runs``), written
    by whichever worker of the ``evaluate`` queue runs it, so no worker writes this table.
    """

    __tablename__ = "audit_runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    requested_by_id: Mapped[str] = mapped_column(String(32))
    requested_by: Mapped[str] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(200))
    n_studies: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=now, index=True)
