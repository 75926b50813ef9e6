"""``/healthz`` while a burst of uploads holds every thread of the request pool: a load balancer
must not take a busy service for a dead one (benchmarks/results/service_load.md)."""

from __future__ import annotations

import anyio
import anyio.to_thread
import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient


def test_healthz_answers_while_every_request_thread_is_taken(client: TestClient) -> None:
    """Sync routes and dependencies run on anyio's pool of request threads; a burst of 200
    uploads queued there held ``/healthz`` for 4.6 s when its settings came from a sync
    dependency. Every token of that pool is held here; ``/healthz`` must need none."""
    assert client.portal is not None
    assert isinstance(client.app, FastAPI)
    assert client.portal.call(_healthz_with_the_pool_taken, client.app) == 200


async def _healthz_with_the_pool_taken(app: FastAPI) -> int | None:
    """``/healthz``'s status with the request pool held; None when it had not answered within
    30 s (it waits for a thread that never comes free)."""
    limiter = anyio.to_thread.current_default_thread_limiter()
    holders = [object() for _ in range(int(limiter.total_tokens))]
    for holder in holders:
        await limiter.acquire_on_behalf_of(holder)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as probe:
            with anyio.move_on_after(30):
                return (await probe.get("/healthz")).status_code
        return None
    finally:
        for holder in holders:
            limiter.release_on_behalf_of(holder)
