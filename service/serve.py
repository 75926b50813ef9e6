"""``echocxr serve`` (the API), ``echocxr worker`` (a Celery worker) and ``echocxr db``.

``serve`` brings the schema up to date first, then serves: with no broker configured it drafts in
its own pool (the embedded mode), otherwise it queues drafts for ``echocxr worker`` processes.
"""

from __future__ import annotations

from typing import Annotated

import typer

from workers.config import Settings


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind; keep 127.0.0.1 unless proxied.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
) -> None:
    """Serve the HTTP API: upload studies, follow their drafts, read and sign reports."""
    import uvicorn

    from service.database import upgrade
    from service.main import create_app

    settings = Settings()
    upgrade(settings)
    mode = "embedded pool" if settings.embedded else f"Celery on {settings.broker_url}"
    typer.echo(f"drafting with: {mode}; records: {settings.sqlalchemy_url.split('@')[-1]}")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")


def worker(
    queues: Annotated[
        str,
        typer.Option(
            help="Comma-separated queues: generate, stat, assistant (GPU) or evaluate (CPU)."
        ),
    ] = "stat,generate,assistant",
    concurrency: Annotated[
        int, typer.Option(min=1, help="Processes; one per GPU, each with the model loaded once.")
    ] = 1,
    pool: Annotated[str, typer.Option(help="Celery pool: prefork (time limits work) or solo.")] = (
        "prefork"
    ),
) -> None:
    """Run a Celery worker on the configured broker (ECHOCXR_BROKER_URL)."""
    from workers.app import QUEUES, app

    settings = Settings()
    if settings.embedded:
        typer.echo("error: set ECHOCXR_BROKER_URL (e.g. redis://127.0.0.1:6379/0)", err=True)
        raise typer.Exit(2)
    names = [name.strip() for name in queues.split(",") if name.strip()]
    unknown = sorted(set(names) - set(QUEUES))
    if unknown or not names:
        typer.echo(f"error: unknown queue(s) {unknown}; choose from {', '.join(QUEUES)}", err=True)
        raise typer.Exit(2)
    app.worker_main(
        [
            "worker",
            "--queues",
            ",".join(settings.queue(name) for name in names),
            "--concurrency",
            str(concurrency),
            "--prefetch-multiplier",
            "1",
            "--pool",
            pool,
            "--loglevel",
            "INFO",
        ]
    )


db = typer.Typer(help="The records' schema (Alembic migrations).", no_args_is_help=True)


@db.command("upgrade")
def upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Migrate the database up (to the newest schema by default)."""
    from service import database

    settings = Settings()
    database.upgrade(settings, revision)
    typer.echo(f"schema at {database.current_revision(settings)}")


@db.command("downgrade")
def downgrade(revision: Annotated[str, typer.Argument(help="Target revision, or base.")]) -> None:
    """Migrate the database down to ``revision`` (``base`` drops every table)."""
    from service import database

    settings = Settings()
    database.downgrade(settings, revision)
    typer.echo(f"schema at {database.current_revision(settings)}")


@db.command("current")
def current() -> None:
    """The schema's revision, and the newest this code knows."""
    from service import database

    settings = Settings()
    typer.echo(
        f"{database.current_revision(settings)} (newest: {database.head_revision(settings)})"
    )
