"""Dependencies of the routes: settings, a database session, the dispatcher, and the caller.

Every ``/v1`` route needs an API key (``Authorization: Bearer <key>``) whose user holds one of
the roles the route names; a refusal is recorded in the audit trail like any access.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from service.dispatch import Dispatcher
from service.models import AuditEvent
from service.schemas import ErrorDetail
from service.users import user_for_key
from workers.config import Settings
from workers.db import session_scope
from workers.generators import DraftProfile

# The app's own objects are read in the event loop (``async def``): a sync dependency runs on
# the request threads, and a burst of uploads that holds them all would hold ``/healthz`` too.


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_session(settings: SettingsDep) -> Iterator[Session]:
    with session_scope(settings.sqlalchemy_url) as session:
        yield session


# "function" scope: the session commits when the route returns, before the response is sent,
# so a client that acts on the response (follows a redirect, polls) finds what it wrote
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def get_dispatcher(request: Request) -> Dispatcher:
    dispatcher: Dispatcher = request.app.state.dispatcher
    return dispatcher


DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]


async def get_profile(request: Request) -> DraftProfile:
    profile: DraftProfile = request.app.state.profile
    return profile


ProfileDep = Annotated[DraftProfile, Depends(get_profile)]


@dataclass(frozen=True)
class Caller:
    """The user behind a request, and where it came from (for the audit trail)."""

    user_id: str
    name: str
    role: str
    client: str


_bearer = HTTPBearer(auto_error=False)
MAX_OFFSET = 10_000_000  # paging past this is a mistake; a bigger number overflows SQLite


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


def current_caller(
    request: Request,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """The caller, looked up in a transaction of its own: a request's session would hold a
    pooled connection for the whole request, an upload's included, and a burst of uploads would
    then exhaust the pool."""
    caller = None
    if credentials is not None and credentials.scheme.lower() == "bearer":
        with session_scope(settings.sqlalchemy_url) as session:
            user = user_for_key(session, credentials.credentials)
            if user is not None:
                caller = Caller(user.id, user.name, user.role, client_address(request))
    if caller is None:
        record_refusal(settings, None, request, status.HTTP_401_UNAUTHORIZED)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "Missing, unknown or revoked API key: send `Authorization: Bearer <key>` with a key "
            "from `echocxr users add`.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return caller


CallerDep = Annotated[Caller, Depends(current_caller)]


def allow(*roles: str) -> Callable[..., Caller]:
    """A dependency that lets only ``roles`` through (403 otherwise, recorded)."""

    def check(request: Request, settings: SettingsDep, caller: CallerDep) -> Caller:
        if caller.role not in roles:
            record_refusal(settings, caller, request, status.HTTP_403_FORBIDDEN)
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"The {caller.role} role may not do this; it needs one of: {', '.join(roles)}.",
            )
        return caller

    return check


def audit(
    session: Session,
    caller: Caller,
    action: str,
    resource_type: str,
    resource_id: str | None,
    outcome: int = status.HTTP_200_OK,
) -> None:
    """Record an access in the request's transaction: it stands or falls with what it records."""
    session.add(
        AuditEvent(
            user_id=caller.user_id,
            user_name=caller.name,
            action=action,
            resource_type=resource_type,
            resource_id=resource_id,
            client=caller.client[:64],
            outcome=outcome,
        )
    )


def record_refusal(settings: Settings, caller: Caller | None, request: Request, code: int) -> None:
    """A refused request, recorded in a transaction of its own (the request's is rolled back)."""
    with session_scope(settings.sqlalchemy_url) as session:
        session.add(
            AuditEvent(
                user_id=caller.user_id if caller else None,
                user_name=caller.name if caller else None,
                action=f"{request.method} {request.scope.get('route_path', request.url.path)}"[:64],
                resource_type="request",
                resource_id=None,
                client=client_address(request)[:64],
                outcome=code,
            )
        )


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the errors a route answers, each a JSON ``{"detail": ...}``."""
    return {code: {"model": ErrorDetail} for code in codes}
