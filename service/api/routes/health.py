"""Liveness and readiness: the load balancer's question is whether the database answers."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from sqlalchemy import text

from service.api.deps import SessionDep
from service.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def health(session: SessionDep) -> Health:
    try:
        session.execute(text("SELECT 1"))
    except Exception as error:  # any driver error means "not ready"
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"database unavailable: {type(error).__name__}"
        ) from None
    return Health(status="ok", database=session.get_bind().dialect.name)
