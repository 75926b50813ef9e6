"""Logging in to the workspace: a session cookie opened with the user's API key.

Why the API key rather than a password: it is the credential every user already has (``echocxr
users add`` prints it), it is 256 random bits (nothing to guess, no password rules or reset flow
to build), and revoking the key or the user, as admins already do, ends the browser sessions it
opened at their next request. A password manager fills it like a password.

The cookie is ``HttpOnly``, ``SameSite=Strict``, limited to ``/app`` and ``Secure`` over HTTPS;
it holds a random token whose SHA-256 is the ``web_sessions`` row. Every state-changing request
also carries the session's CSRF token (a hidden form field, or ``X-CSRF-Token`` from scripts),
checked in constant time.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request, status
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from service.api.deps import Caller, SessionDep, SettingsDep, client_address, record_refusal
from service.models import ADMIN, AUDITOR, ApiKey, User, WebSession
from service.users import hash_key
from workers.records import now

COOKIE = "echocxr_session"
COOKIE_PATH = "/app"
SESSION_LENGTH = timedelta(hours=12)  # one long reading shift; then the key is asked again
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True)
class Viewer(Caller):
    """The logged-in user of a page, with the token their forms must send back."""

    csrf_token: str = ""


class LoginRequiredError(Exception):
    """No valid session: pages send the browser to the login form, scripts get 401."""


class RoleRefusedError(Exception):
    """The viewer's role may not open this page (403, recorded)."""

    def __init__(self, viewer: Viewer, roles: tuple[str, ...]) -> None:
        super().__init__(viewer.role)
        self.viewer, self.roles = viewer, roles


class CsrfError(Exception):
    """A state-changing request without the session's CSRF token (403)."""


def open_session(session: Session, key: str) -> tuple[str, User] | None:
    """A new session for the holder of ``key``: the cookie's token and the user; None for an
    unknown or revoked key (or user)."""
    found = session.scalar(select(ApiKey).where(ApiKey.key_sha256 == hash_key(key.strip())))
    if found is None or found.revoked_at is not None:
        return None
    user = session.get(User, found.user_id)
    if user is None or user.revoked_at is not None:
        return None
    token = secrets.token_urlsafe(32)
    session.add(
        WebSession(
            token_sha256=hash_key(token),
            user_id=user.id,
            api_key_id=found.id,
            csrf_token=secrets.token_urlsafe(32),
            expires_at=now() + SESSION_LENGTH,
        )
    )
    return token, user


def close_session(session: Session, token: str | None) -> None:
    if token:
        session.execute(delete(WebSession).where(WebSession.token_sha256 == hash_key(token)))


def viewer_for(session: Session, token: str, client: str) -> Viewer | None:
    """The user behind a session token while the session, its key and its user are all valid."""
    row = session.get(WebSession, hash_key(token))
    if row is None or row.expires_at <= now():
        return None
    key = session.get(ApiKey, row.api_key_id)
    user = session.get(User, row.user_id)
    if key is None or key.revoked_at is not None or user is None or user.revoked_at is not None:
        return None
    return Viewer(user.id, user.name, user.role, client, row.csrf_token)


def current_viewer(request: Request, session: SessionDep) -> Viewer:
    token = request.cookies.get(COOKIE)
    viewer = viewer_for(session, token, client_address(request)) if token else None
    if viewer is None:
        raise LoginRequiredError
    return viewer


ViewerDep = Annotated[Viewer, Depends(current_viewer)]


def page_for(*roles: str) -> Callable[..., Viewer]:
    """A dependency letting only ``roles`` open a page; a refusal is recorded and explained."""

    def check(request: Request, settings: SettingsDep, viewer: ViewerDep) -> Viewer:
        if viewer.role not in roles:
            record_refusal(settings, viewer, request, status.HTTP_403_FORBIDDEN)
            raise RoleRefusedError(viewer, roles)
        return viewer

    return check


QualityTeamPage = Annotated[Viewer, Depends(page_for(AUDITOR, ADMIN))]
"""The quality team's pages (audits, archives): auditors and admins."""


async def check_csrf(request: Request, viewer: ViewerDep) -> Viewer:
    """The viewer, once the request proved it comes from one of the session's own pages."""
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form()
        field = form.get(CSRF_FIELD)
        sent = field if isinstance(field, str) else None
    if not sent or not hmac.compare_digest(sent, viewer.csrf_token):
        raise CsrfError
    return viewer


CsrfChecked = Annotated[Viewer, Depends(check_csrf)]


def login_url(request: Request) -> str:
    """The login form, coming back to the page asked for."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"{COOKIE_PATH}/login?next={quote(target, safe='')}"


def safe_next(target: str | None) -> str | None:
    """A page of the workspace to go to after logging in, never another site."""
    if target and target.startswith(f"{COOKIE_PATH}/") and not target.startswith("//"):
        return target if "\\" not in target and "//" not in target else None
    return None
