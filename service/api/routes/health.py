"""Liveness, readiness and metrics: what a load balancer and Prometheus ask.

``/healthz`` says the process answers and reaches its database; ``/readyz`` that it can do its
work (schema up to date, broker reachable, model files in place); ``/metrics`` is Prometheus
text. None needs a key: they carry no study data.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from service.api.deps import DispatcherDep, SessionDep, SettingsDep
from service.database import current_revision, head_revision
from service.metrics import exposition
from service.schemas import Health, Readiness
from workers.config import Settings
from workers.db import session_scope

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def health(settings: SettingsDep) -> Health:
    """The database answers a query. Run on a thread of its own, not the request pool's, so a
    burst of uploads holding every pool thread cannot make the service look dead."""
    try:
        dialect = await asyncio.to_thread(_database_answers, settings)
    except Exception as error:  # any driver error means "not healthy"
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"database unavailable: {type(error).__name__}"
        ) from None
    return Health(status="ok", database=dialect)


def _database_answers(settings: Settings) -> str:
    with session_scope(settings.sqlalchemy_url) as session:
        session.execute(text("SELECT 1"))
        return session.get_bind().dialect.name


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
def ready(request: Request, settings: SettingsDep, dispatcher: DispatcherDep) -> JSONResponse:
    checks = {
        "database": _database_problem(request) or "ok",
        "broker": dispatcher.broker_problem() or "ok",
        "model": request.app.state.profile_problem or "ok",
    }
    ok = all(value == "ok" for value in checks.values())
    body = Readiness(status="ready" if ok else "not ready", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


def _database_problem(request: Request) -> str | None:
    settings = request.app.state.settings
    try:
        current, head = current_revision(settings), head_revision(settings)
    except Exception as error:
        return f"unreachable ({type(error).__name__})"
    if current != head:
        return f"schema at {current}, code expects {head}: run `echocxr db upgrade`"
    return None


@router.get("/metrics", response_class=Response)
def metrics(settings: SettingsDep, session: SessionDep, dispatcher: DispatcherDep) -> Response:
    """Prometheus text: queue depths, jobs by state, upload-to-draft latency, drafts by engine."""
    return Response(
        exposition(session, dispatcher), media_type="text/plain; version=0.0.4; charset=utf-8"
    )
