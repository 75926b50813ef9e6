"""``echocxr report-archive``: every study of a folder drafted in batches (``workers.archive``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from model import DEFAULT_ARCHIVE_ENGINE
from service.reporting import (
    CheckpointOption,
    OutOption,
    engine_option_parameter,
    engine_parameter,
    fail,
    load_generator,
)
from workers.archive import (
    MANIFEST,
    ArchiveFolderError,
    StageSeconds,
    count_outcomes,
    draft_archive,
)
from workers.readers import ALREADY_DRAFTED, DEFAULT_READERS, DRAFTED, FAILED, Outcome


def report_archive(
    archive: Annotated[
        Path, typer.Argument(help="A folder with one study per entry (file, folder, ZIP/TAR).")
    ],
    out: OutOption = Path("report-archive-output"),
    checkpoint: CheckpointOption = None,
    engine: Annotated[
        str | None, engine_parameter("ECHOCXR_ARCHIVE_ENGINE", DEFAULT_ARCHIVE_ENGINE)
    ] = None,
    engine_option: Annotated[
        list[str] | None, engine_option_parameter("ECHOCXR_ARCHIVE_ENGINE_OPTIONS")
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Studies decoded together; larger uses more memory.")
    ] = 64,
    readers: Annotated[
        int,
        typer.Option(
            min=0,
            help="Processes that read and decode DICOM beside the model (0: in the model's "
            "process; default: one per core, at most 8). Reading a full-resolution radiograph "
            "costs more than drafting it.",
        ),
    ] = DEFAULT_READERS,
) -> None:
    """Draft every study of an archive folder in batches; OUT/archive.csv lists each outcome."""
    engine = engine or (None if checkpoint else DEFAULT_ARCHIVE_ENGINE)
    generator = load_generator(checkpoint, engine, engine_option, batch_size)
    start, seconds = time.perf_counter(), StageSeconds()
    progress = {"drafted": 0, "failed": 0}

    def show(done: list[Outcome]) -> None:
        for outcome in done:
            progress[outcome.status] += 1
        typer.echo(f"drafted {progress['drafted']}, failed {progress['failed']}", err=True)

    try:
        outcomes = draft_archive(archive, out, generator, seconds, readers, on_batch=show)
    except ArchiveFolderError as error:
        raise fail(str(error)) from None
    counts = count_outcomes(outcomes)
    elapsed = time.perf_counter() - start
    typer.echo(
        f"{counts[DRAFTED]} drafted, {counts[ALREADY_DRAFTED]} already drafted, "
        f"{counts[FAILED]} failed ({out / MANIFEST}); {elapsed:.1f} s ({seconds}), "
        f"{counts[DRAFTED] / elapsed:.2f} drafts/s"
    )
    if counts[FAILED]:
        raise typer.Exit(1)
