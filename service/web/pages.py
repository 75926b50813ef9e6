"""Rendering the workspace's pages: the templates, the menu each role sees, the security headers,
and errors as pages a person can act on.

Every response under ``/app`` carries a Content Security Policy that allows scripts, styles and
images from the service itself only (``script-src 'self'``, no inline script): nothing is loaded
from a CDN, and an injected script would not run. Pages are ``no-store``: they show patient data.
The referrer policy is ``same-origin``: no address leaves for another site, while the browser
still sends the ``Origin`` the form check reads (``no-referrer`` would turn it into ``null``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request, Response, status
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.models import ADMIN, AUDITOR, RADIOLOGIST, UPLOADER
from service.web.session import (
    COOKIE_PATH,
    CsrfError,
    LoginRequiredError,
    RoleRefusedError,
    Viewer,
    login_url,
)
from workers.records import now

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


@dataclass(frozen=True)
class MenuItem:
    label: str
    path: str
    roles: tuple[str, ...]


MENU = (
    MenuItem("Worklist", f"{COOKIE_PATH}/worklist", (RADIOLOGIST, ADMIN)),
    MenuItem("Upload", f"{COOKIE_PATH}/upload", (UPLOADER, RADIOLOGIST, ADMIN)),
    MenuItem("Audits", f"{COOKIE_PATH}/audits", (AUDITOR, ADMIN)),
    MenuItem("Archives", f"{COOKIE_PATH}/archives", (AUDITOR, ADMIN)),
    MenuItem("Admin", f"{COOKIE_PATH}/admin", (ADMIN,)),
)


def menu_for(role: str) -> list[MenuItem]:
    return [item for item in MENU if role in item.roles]


def home_for(role: str) -> str:
    """The first page of the menu a role may open."""
    return menu_for(role)[0].path


def page(
    request: Request,
    template: str,
    viewer: Viewer | None,
    *,
    title: str,
    status_code: int = status.HTTP_200_OK,
    **context: Any,
) -> Response:
    """A page in the workspace's layout, with the menu of the viewer's role."""
    menu = menu_for(viewer.role) if viewer else []
    return TEMPLATES.TemplateResponse(
        request,
        template,
        {"viewer": viewer, "menu": menu, "title": title, "path": request.url.path, **context},
        status_code=status_code,
    )


def waited(moment: datetime | None) -> str:
    """How long ago, as a reader says it: "42 min", "3 h 5 min", "2 d 4 h"."""
    if moment is None:
        return ""
    minutes = max(0, int((now() - moment).total_seconds() // 60))
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def moment(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if value else ""


TEMPLATES.env.filters["waited"] = waited
TEMPLATES.env.filters["moment"] = moment


def wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


async def security_headers(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """The CSP and no-store on every workspace response that did not set its own; a form sent
    to the workspace from another site's page is refused (the login form has no session token
    yet, so the browser's Origin header is what protects it)."""
    workspace = request.url.path.startswith(COOKIE_PATH)
    if workspace and request.method not in ("GET", "HEAD") and not _same_origin(request):
        return JSONResponse(
            {"detail": "Forms of the workspace are sent from its own pages only."},
            status.HTTP_403_FORBIDDEN,
        )
    response = await call_next(request)
    if workspace:
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if not request.url.path.startswith(f"{COOKIE_PATH}/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
    return response


def _same_origin(request: Request) -> bool:
    """No Origin header (not a browser, or an old one), or the service's own."""
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.headers.get("host")


async def login_required(request: Request, error: Exception) -> Response:
    if request.method == "GET" and wants_html(request):
        return RedirectResponse(login_url(request), status.HTTP_303_SEE_OTHER)
    return JSONResponse(
        {"detail": "Your session has ended; log in again."}, status.HTTP_401_UNAUTHORIZED
    )


async def role_refused(request: Request, error: Exception) -> Response:
    assert isinstance(error, RoleRefusedError)
    message = (
        f"The {error.viewer.role} role cannot open this page; it is for: "
        f"{', '.join(error.roles)}. Ask an admin if you need it."
    )
    return problem(request, error.viewer, status.HTTP_403_FORBIDDEN, message)


async def csrf_refused(request: Request, error: Exception) -> Response:
    message = (
        "This form was not sent from a workspace page of your session (it may be older than "
        "your last login); go back, reload the page and send it again."
    )
    return problem(request, None, status.HTTP_403_FORBIDDEN, message)


async def http_error(request: Request, error: Exception) -> Response:
    """Workspace pages get an error page; the API keeps its JSON ``{"detail"}``."""
    assert isinstance(error, StarletteHTTPException)
    if request.url.path.startswith(COOKIE_PATH) and wants_html(request):
        return problem(request, None, error.status_code, str(error.detail))
    return await http_exception_handler(request, error)


async def invalid_request(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    if request.url.path.startswith(COOKIE_PATH) and wants_html(request):
        fields = "; ".join(
            f"{'.'.join(str(p) for p in item['loc'][1:])}: {item['msg']}" for item in error.errors()
        )
        return problem(request, None, status.HTTP_422_UNPROCESSABLE_CONTENT, fields)
    return await request_validation_exception_handler(request, error)


def problem(request: Request, viewer: Viewer | None, code: int, message: str) -> Response:
    if not wants_html(request):
        return JSONResponse({"detail": message}, code)
    return page(
        request,
        "error.html",
        viewer,
        title="Cannot do that",
        status_code=code,
        code=code,
        message=message,
    )


HANDLERS: dict[type[Exception], Callable[[Request, Exception], Awaitable[Response]]] = {
    LoginRequiredError: login_required,
    RoleRefusedError: role_refused,
    CsrfError: csrf_refused,
    StarletteHTTPException: http_error,
    RequestValidationError: invalid_request,
}
