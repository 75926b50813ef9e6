"""The FastAPI application: routers mounted under ``/v1``, errors as short JSON details."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from service.api.routes import health, studies

logger = logging.getLogger(__name__)


def create_app() -> FastAPI:
    app = FastAPI(title="EchoCXR", version="0.1.0")
    app.include_router(health.router)
    app.include_router(studies.router, prefix="/v1")
    app.add_exception_handler(Exception, _unexpected_error)
    return app


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    """No stack trace to the caller; only the error type to the log (messages may hold data)."""
    logger.error("unhandled %s on %s %s", type(error).__name__, request.method, request.url.path)
    return JSONResponse(
        status_code=500, content={"detail": "Internal error; the request was not applied."}
    )
