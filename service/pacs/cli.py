"""``echocxr dimse-listen`` (a C-STORE SCP) and ``echocxr pacs poll`` (QIDO-RS, once)."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from workers.config import Settings

pacs = typer.Typer(help="The PACS peer (ECHOCXR_PACS_DICOMWEB_URL).", no_args_is_help=True)
POLL_WAIT_S = 3600.0


def dimse_listen(
    ae_title: Annotated[
        str | None, typer.Option(help="Our AE title (default ECHOCXR_DIMSE_AE_TITLE).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="TCP port (default ECHOCXR_DIMSE_PORT).", min=1, max=65535)
    ] = None,
    host: Annotated[
        str, typer.Option(help="Interface to bind; 0.0.0.0 for modalities on the network.")
    ] = "127.0.0.1",
) -> None:
    """Receive studies over DICOM (C-STORE, C-ECHO) and draft them until interrupted."""
    from service.database import upgrade
    from service.dispatch import make_dispatcher, redispatch
    from service.pacs.dimse import listening
    from workers.generators import resolve_profile

    settings = Settings()
    upgrade(settings)
    profile = resolve_profile(settings)
    dispatcher = make_dispatcher(settings)
    if settings.embedded:
        redispatch(dispatcher, settings, everything=True)
    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())
    title, listen_port = ae_title or settings.dimse_ae_title, port or settings.dimse_port
    try:
        with listening(settings, profile, dispatcher, host=host, port=listen_port, ae_title=title):
            typer.echo(f"listening as {title} on {host}:{listen_port}")
            stop.wait()
    finally:
        dispatcher.close()


@pacs.command("poll")
def poll(
    days: Annotated[
        int | None, typer.Option(min=1, help="Study dates to look back (ECHOCXR_PACS_POLL_DAYS).")
    ] = None,
) -> None:
    """Ask the PACS (QIDO-RS) for recent studies not drafted yet, and draft them.

    With a broker the pulls are queued for the workers; in the embedded mode this command
    drafts them itself and returns when they are done.
    """
    from dicom import DicomWebError
    from service.dispatch import EmbeddedDispatcher, make_dispatcher
    from service.pacs.polling import poll_once
    from workers.pacs import PacsNotConfiguredError

    settings = Settings()
    dispatcher = make_dispatcher(settings)
    try:
        due = poll_once(dispatcher, settings, days)
        typer.echo(f"{len(due)} studies to pull")
        if isinstance(dispatcher, EmbeddedDispatcher) and not dispatcher.wait_idle(POLL_WAIT_S):
            typer.echo("error: the pulls did not finish within an hour", err=True)
            raise typer.Exit(1)
    except (PacsNotConfiguredError, DicomWebError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    finally:
        dispatcher.close()
