"""``echocxr serve``: the API under uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind; keep 127.0.0.1 unless proxied.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
) -> None:
    """Serve the HTTP API (upload studies, fetch what was read, health)."""
    import uvicorn

    from service.main import create_app

    uvicorn.run(create_app(), host=host, port=port, log_level="info")
