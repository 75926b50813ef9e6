"""The FastAPI application: routers mounted under ``/v1``, errors as short JSON details.

``create_app(settings)`` builds the app for one deployment: the dispatcher (the embedded pool,
or Celery when a broker is configured) starts with the app and stops with it, and jobs (and, in
the embedded pool, audits) the last process left queued are handed over again. The radiologist
workspace is served under ``/app`` (``service.web``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeout

from service.api.routes import (
    batches,
    dicomweb,
    health,
    jobs,
    pacs,
    reports,
    studies,
    worklist,
)
from service.dispatch import make_dispatcher, redispatch
from service.limits import BodySizeLimit
from service.pacs.polling import keep_polling
from service.web import mount_workspace
from service.web.audit_runs import resume_audits
from workers.config import Settings
from workers.db import session_scope
from workers.generators import resolve_profile, set_torch_threads

logger = logging.getLogger(__name__)
REDISPATCH_EVERY_S = 60.0
INGEST_SLOTS = 4


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _start(app, settings)
        try:
            yield
        finally:
            app.state.stopping.set()
            app.state.dispatcher.close()

    app = FastAPI(
        title="EchoCXR",
        version="0.1.0",
        lifespan=lifespan,
        description="Preliminary chest X-ray report drafts for radiologist review.",
    )
    app.state.settings = settings
    app.add_middleware(BodySizeLimit, limit_bytes=settings.max_upload_mb * 1024 * 1024)
    app.include_router(health.router)
    routers = (studies, jobs, reports, worklist, pacs, batches)
    for router in (module.router for module in routers):
        app.include_router(router, prefix="/v1")
    app.include_router(dicomweb.router)
    mount_workspace(app)
    app.add_exception_handler(SQLAlchemyTimeout, _records_busy)
    app.add_exception_handler(Exception, _unexpected_error)
    return app


def _start(app: FastAPI, settings: Settings) -> None:
    """Resolve the drafting profile, start the dispatcher, hand over what is pending."""
    from model.checkpoint import CheckpointError
    from model.decoding import EngineError

    app.state.profile_problem = None
    try:
        app.state.profile = resolve_profile(settings)
    except (CheckpointError, EngineError) as error:
        # the service still serves what it has; /readyz says why it cannot draft
        app.state.profile, app.state.profile_problem = None, str(error)
    if settings.embedded:  # this process drafts
        set_torch_threads(settings)
    app.state.dispatcher = make_dispatcher(settings)
    # uploads are read and recorded a few at a time: a burst must not take every thread of the
    # request pool (the other routes run there) nor queue on SQLite's one writer
    app.state.ingest_slots = asyncio.Semaphore(INGEST_SLOTS)
    app.state.stopping = threading.Event()
    if settings.pacs_dicomweb_url is not None and settings.pacs_poll_interval_s > 0:
        poller = (app.state.dispatcher, settings, app.state.stopping)
        threading.Thread(target=keep_polling, args=poller, daemon=True).start()
    if not settings.embedded:
        threading.Thread(target=_keep_handing_over, args=(app,), daemon=True).start()
        return
    try:
        redispatch(app.state.dispatcher, settings, everything=True)
        with session_scope(settings.sqlalchemy_url) as session:
            resume_audits(app.state.dispatcher, settings, session)
    except Exception as error:  # a schema not migrated yet: /readyz says so
        logger.error("pending work not handed over at start (%s)", type(error).__name__)


def _keep_handing_over(app: FastAPI) -> None:
    """With a broker: hand over, every minute, jobs a broker outage kept from their workers."""
    while not app.state.stopping.wait(REDISPATCH_EVERY_S):
        try:
            redispatch(app.state.dispatcher, app.state.settings, everything=False)
        except Exception as error:
            logger.warning("redispatch failed (%s)", type(error).__name__)


async def _records_busy(request: Request, error: Exception) -> JSONResponse:
    """No database connection came free in time: the service is overloaded, not broken."""
    logger.warning("records busy on %s %s", request.method, request.url.path)
    return JSONResponse(
        status_code=503,
        content={"detail": "The service is busy; nothing was applied. Retry in a few seconds."},
        headers={"Retry-After": "5"},
    )


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    """No stack trace to the caller; only the error type to the log (messages may hold data)."""
    logger.error("unhandled %s on %s %s", type(error).__name__, request.method, request.url.path)
    return JSONResponse(
        status_code=500, content={"detail": "Internal error; the request was not applied."}
    )
