"""Logging in and out, and the home page that sends each role to its first page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response, status
from fastapi.responses import RedirectResponse

from service.api.deps import Caller, SettingsDep, audit, client_address, record_refusal
from service.web.pages import home_for, page
from service.web.session import (
    COOKIE,
    COOKIE_PATH,
    SESSION_LENGTH,
    CsrfChecked,
    ViewerDep,
    close_session,
    open_session,
    safe_next,
)
from workers.db import session_scope

router = APIRouter(include_in_schema=False)


@router.get("/")
def home(viewer: ViewerDep) -> Response:
    return RedirectResponse(home_for(viewer.role), status.HTTP_303_SEE_OTHER)


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> Response:
    return page(request, "login.html", None, title="Log in", next=safe_next(next) or "")


@router.post("/login")
def login(
    request: Request,
    settings: SettingsDep,
    api_key: Annotated[str, Form(max_length=200)],
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Open a session for the key's holder; a wrong key is recorded and asked again.

    The session is committed before the answer leaves, in a transaction of its own: the
    browser follows the redirect at once, and must find it.
    """
    with session_scope(settings.sqlalchemy_url) as session:
        opened = open_session(session, api_key)
        if opened is not None:
            token, user = opened
            caller = Caller(user.id, user.name, user.role, client_address(request))
            audit(session, caller, "web.login", "user", user.id)
    if opened is None:
        record_refusal(settings, None, request, status.HTTP_401_UNAUTHORIZED)
        return page(
            request,
            "login.html",
            None,
            title="Log in",
            status_code=status.HTTP_401_UNAUTHORIZED,
            next=safe_next(next) or "",
            error="That key is unknown or revoked. Paste the whole key `echocxr users add` "
            "printed for you (it starts with ecx_), or ask an admin for a new one.",
        )
    response = RedirectResponse(safe_next(next) or home_for(user.role), status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(SESSION_LENGTH.total_seconds()),
        path=COOKIE_PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


@router.post("/logout")
def logout(request: Request, settings: SettingsDep, viewer: CsrfChecked) -> Response:
    with session_scope(settings.sqlalchemy_url) as session:
        close_session(session, request.cookies.get(COOKIE))
        audit(session, viewer, "web.logout", "user", viewer.user_id)
    response = RedirectResponse(f"{COOKIE_PATH}/login", status.HTTP_303_SEE_OTHER)
    response.delete_cookie(COOKIE, path=COOKIE_PATH)
    return response
