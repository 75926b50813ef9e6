"""``echocxr report-archive``: every study of a folder drafted in batches (``workers.archive``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

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
    read_archive_log,
)
from workers.readers import ALREADY_DRAFTED, DEFAULT_READERS, DRAFTED, FAILED, Outcome

if TYPE_CHECKING:
    from model.report import ReportGenerator

INTERRUPTED = 130  # the shell's status for a command ended by SIGINT (128 + 2)


class ArchiveBar:
    """The run's progress on stderr (an ``ArchiveProgress``): entries read and entries finished,
    each with its total, rate and time left. Reading comes first and takes most of the time, so
    its line moves while the first batch is still being read and decoded.

    Each step redraws at once in a terminal; elsewhere (a log, a pipe) only the final state is
    printed, when the run ends.
    """

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self.reading = self.progress.add_task("read", total=None)
        self.drafting = self.progress.add_task("drafted", total=None)
        self.entries, self.failed = 0, 0

    def planned(self, to_draft: int, kept: int) -> None:
        self.entries = to_draft + kept
        for task in (self.reading, self.drafting):
            self.progress.update(task, total=to_draft, refresh=True)

    def read(self) -> None:
        self.progress.update(self.reading, advance=1, refresh=True)

    def finished(self, outcome: Outcome) -> None:
        self.failed += outcome.status == FAILED
        description = f"drafted, {self.failed} failed" if self.failed else "drafted"
        self.progress.update(self.drafting, advance=1, description=description, refresh=True)


class _RateColumn(ProgressColumn):
    """Entries a second over rich's recent window; '?' until two steps are known."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("? /s" if speed is None else f"{speed:.2f}/s")


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
    """Draft every study of an archive folder in batches; OUT/archive.csv lists each outcome.

    Ctrl-C stops the run: the drafts finished are kept and listed, and running the same command
    again drafts the rest.
    """
    engine = engine or (None if checkpoint else DEFAULT_ARCHIVE_ENGINE)
    generator = load_generator(checkpoint, engine, engine_option, batch_size)
    start, seconds, bar = time.perf_counter(), StageSeconds(), ArchiveBar()
    try:
        with bar.progress:
            outcomes = draft_archive(archive, out, generator, seconds, readers, bar)
    except ArchiveFolderError as error:
        raise fail(str(error)) from None
    except KeyboardInterrupt:
        listed = read_archive_log(out).values()
        drafted = sum(outcome.status in (DRAFTED, ALREADY_DRAFTED) for outcome in listed)
        typer.echo(
            f"interrupted: {drafted} of {bar.entries} entries are drafted and listed in "
            f"{out / MANIFEST}; run the same command again to draft the "
            f"{bar.entries - drafted} left",
            err=True,
        )
        raise typer.Exit(INTERRUPTED) from None
    counts, elapsed = count_outcomes(outcomes), time.perf_counter() - start
    typer.echo(
        f"{counts[DRAFTED]} drafted, {counts[ALREADY_DRAFTED]} already drafted, "
        f"{counts[FAILED]} failed ({out / MANIFEST}); {elapsed:.1f} s, "
        f"{counts[DRAFTED] / elapsed:.2f} drafts/s\n"
        f"where the time went: {seconds}\n"
        f"drafted by {describe_generator(generator)}"
    )
    if counts[FAILED]:
        raise typer.Exit(1)


def describe_generator(generator: ReportGenerator) -> str:
    """The engine and checkpoint a draft comes from, as a reader compares two runs by them."""
    checkpoint = generator.checkpoint
    return (
        f"engine {generator.engine.name}, checkpoint {checkpoint.model_id} "
        f"(weights sha256 {checkpoint.weights_sha256[:12]})"
    )
