"""The radiologist workspace: server-rendered pages under ``/app``, served by the API itself.

Worklist, reading view (image, draft, findings, warnings, sign, assistant), upload, audits,
archives and an admin page, each for the roles of ``service.models``, every view an audit
event. Jinja2 templates and one small script file (``static/app.js``); nothing from outside
the service, which the Content Security Policy enforces (``service.web.pages``). Logins are
browser sessions opened with the user's API key (``service.web.session``).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from service.web.pages import HANDLERS, security_headers
from service.web.routes import admin, archives, audits, auth, review, worklist
from service.web.session import COOKIE_PATH


def mount_workspace(app: FastAPI) -> None:
    """Add the workspace's pages, static files, error pages and headers to ``app``."""
    for module in (auth, worklist, review, audits, archives, admin):
        app.include_router(module.router, prefix=COOKIE_PATH)
    static = StaticFiles(directory=Path(__file__).parent / "static")
    app.mount(f"{COOKIE_PATH}/static", static, name="workspace-static")
    app.middleware("http")(security_headers)
    for kind, handler in HANDLERS.items():
        app.add_exception_handler(kind, handler)
