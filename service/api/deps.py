"""Dependencies of the routes: settings, a database session, and the caller's authorisation."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from ipaddress import ip_address
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from service.core.config import Settings, get_settings
from service.core.db import session_scope

SettingsDep = Annotated[Settings, Depends(get_settings)]
_bearer = HTTPBearer(auto_error=False)


def get_session(settings: SettingsDep) -> Iterator[Session]:
    with session_scope(settings.sqlalchemy_url) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def require_caller(
    request: Request,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """A valid bearer token, or, when no token is configured, a loopback client.

    Running without a token is meant for a workstation; a shared deployment sets
    ``ECHOCXR_API_TOKEN`` and is then reachable through its proxy.
    """
    token = settings.api_token
    if token is None:
        host = request.client.host if request.client else ""
        if not _is_loopback(host):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                "This server has no API token configured and only answers local clients; "
                "set ECHOCXR_API_TOKEN to serve other machines.",
            )
        return
    given = credentials.credentials if credentials else ""
    if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "Missing or wrong bearer token.",
            headers={"WWW-Authenticate": "Bearer"},
        )


def _is_loopback(host: str) -> bool:
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


CallerDep = Depends(require_caller)
