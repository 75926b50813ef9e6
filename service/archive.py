"""Drafting a whole archive in batches: the throughput use; `echocxr report` is the latency one.

An archive is a folder holding one study per entry (a DICOM file, a folder, a ZIP/TAR or a
DICOMDIR: whatever `echocxr report` reads). The model drafts the studies in batches (at batch 64,
per draft, AR spends a sixth and one step under half of their batch-1 decoding time), reader
processes read the DICOM beside it (reading is ~75% of an archive's time;
``benchmarks/results/archive_drafting.md``), and each draft is written by ``write_draft``, as a
single report is, into ``OUT/<entry name>/``.

A bad entry costs only itself: it is recorded as failed, with the reader's message, and the
rest of the archive is drafted. That holds too for an entry that kills its reader process (a
decoder's crash, the OOM killer): ``Readers`` finds it by reading again, alone, what the dead
process's pool lost. ``OUT/archive.csv`` is rewritten after every batch, so it
always says what is done; a second run drafts only the entries without all four report files
(a failed entry is tried again, a drafted one is kept).
"""

from __future__ import annotations

import csv
import io
import itertools
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from model import DEFAULT_ARCHIVE_ENGINE
from service.reporting import (
    CheckpointOption,
    OutOption,
    engine_option_parameter,
    engine_parameter,
    fail,
    load_generator,
    pick_image,
    write_draft,
)

if TYPE_CHECKING:
    import numpy as np

    import dicom
    from model.report import ReportGenerator

MANIFEST = "archive.csv"
READ_AHEAD = 2  # batches read beyond the one being decoded
# Reading a radiograph costs ~5x drafting it at batch 64, so reading pays only when spread over
# several processes: on 2 cores one reader process was slower than reading in the model's
# process and two were faster (benchmarks/results/archive_drafting.md).
DEFAULT_READERS = min(8, os.cpu_count() or 1) if (os.cpu_count() or 1) > 1 else 0
PARENT_CHECK_SECONDS = 1.0
DRAFTED, ALREADY_DRAFTED, FAILED = "drafted", "already drafted", "failed"


@dataclass(frozen=True)
class Outcome:
    """What became of one entry; ``detail`` says why it failed, in the reader's words."""

    entry: str
    status: str
    detail: str = ""


@dataclass
class StageSeconds:
    """Where an archive's time goes: waiting for DICOM to be read (all of the reading when it
    is not done in reader processes), decoding with labelling, writing the four files."""

    read: float = 0.0
    decode: float = 0.0
    write: float = 0.0

    def __str__(self) -> str:
        decode, write = f"{self.decode:.1f} s", f"{self.write:.1f} s"
        return f"read {self.read:.1f} s, decode and label {decode}, write {write}"


@dataclass(frozen=True)
class ReadStudy:
    entry: Path
    study: dicom.Study
    pixels: np.ndarray


class ArchiveFolderError(ValueError):
    """The archive or output folder given cannot be drafted into; nothing was written."""


def study_entries(root: Path, out: Path) -> list[Path]:
    """The archive's entries in name order, leaving out hidden ones and the output folder."""
    if not root.is_dir():
        raise ArchiveFolderError(
            f"{root} is not a folder; an archive is a folder with one study per entry "
            "(use `echocxr report` for a single study)"
        )
    output = out.resolve()
    if output == root.resolve():
        raise ArchiveFolderError(
            "--out is the archive folder itself; give a separate folder (one inside the "
            "archive is fine: it is skipped)"
        )
    return sorted(
        entry
        for entry in root.iterdir()
        if not entry.name.startswith(".") and entry.resolve() != output
    )


def is_drafted(folder: Path) -> bool:
    """All four report files are there; ``write_draft`` writes each one atomically."""
    from dicom.bundle import REPORT_FILES

    return all((folder / name).is_file() for name in REPORT_FILES.values())


def read_entry(entry: Path, image_size: int) -> ReadStudy | Outcome:
    """The model input and headers of one entry, or its failure in the reader's words.

    The full-resolution pixels are released once the model input is made, so a batch waiting
    for the model holds ~64 KB a study instead of 20-40 MB, and a reader process sends little
    back.
    """
    import dicom

    try:
        study = dicom.read_study(entry)
        pixels = dicom.to_model_input(pick_image(study), image_size)
    except dicom.DicomError as error:
        return Outcome(entry.name, FAILED, str(error))
    return ReadStudy(entry, study.without_pixels(), pixels)


def _start_reader(parent: int) -> None:
    """A reader resizes with torch (MONAI): one thread each, as the readers are many. It ends
    itself when its parent is gone: a parent killed outright (the OOM killer, ``kill -9``) does
    not close the executor's queue, and its readers would wait on it forever."""
    import torch

    torch.set_num_threads(1)
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _exit_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(1)


ReadEntry = Callable[[Path, int], ReadStudy | Outcome]
READER_DIED = (
    "reading this entry killed the reader process, also when read alone (out of memory, or a "
    "decoder crashed); check the file with `echocxr ingest`"
)


class Readers:
    """Reader processes that survive one of them dying.

    A process killed by the kernel's OOM killer, or by a decoder's crash, breaks its whole
    ``ProcessPoolExecutor``: every entry queued on it fails, not only the one being read. The
    entries it took down are read again in a fresh pool, halving the lot while none of it
    completes, so that only an entry which kills a reader on its own is recorded as failed.
    """

    def __init__(self, processes: int, image_size: int, read: ReadEntry = read_entry) -> None:
        self.processes, self.image_size, self.read = processes, image_size, read
        self.pool = self._new_pool()

    def _new_pool(self, processes: int | None = None) -> ProcessPoolExecutor:
        # spawn, not fork: the parent holds torch's thread pools, which a forked child can
        # deadlock on
        context = multiprocessing.get_context("spawn")
        size = processes or self.processes
        return ProcessPoolExecutor(
            size, mp_context=context, initializer=_start_reader, initargs=(os.getpid(),)
        )

    def submit(self, batch: Sequence[Path]) -> list[Future[ReadStudy | Outcome]]:
        return [self._submit(self.pool, entry) for entry in batch]

    def _submit(self, pool: ProcessPoolExecutor, entry: Path) -> Future[ReadStudy | Outcome]:
        """A read queued on ``pool``; on a pool that broke since, a read lost with it."""
        try:
            return pool.submit(self.read, entry, self.image_size)
        except BrokenProcessPool as error:
            lost: Future[ReadStudy | Outcome] = Future()
            lost.set_exception(error)
            return lost

    def results(
        self, batch: Sequence[Path], futures: Sequence[Future[ReadStudy | Outcome]]
    ) -> tuple[list[ReadStudy | Outcome], bool]:
        """The batch read, and whether the pool broke on the way: it is then replaced, and what
        was queued on it must be submitted again (``revive``)."""
        done = dict(zip(batch, map(_result_unless_broken, futures), strict=True))
        lost = [entry for entry, result in done.items() if result is None]
        if lost:
            self.pool.shutdown(cancel_futures=True)  # waits until every future is settled
            done.update(self.read_isolating(lost))
            self.pool = self._new_pool()
        return [result for result in done.values() if result is not None], bool(lost)

    def revive(
        self, batch: Sequence[Path], futures: Sequence[Future[ReadStudy | Outcome]]
    ) -> list[Future[ReadStudy | Outcome]]:
        """The batch's reads, those that a broken pool took down submitted again."""
        return [
            future if _read(future) else self._submit(self.pool, entry)
            for entry, future in zip(batch, futures, strict=True)
        ]

    def read_isolating(self, entries: Sequence[Path]) -> dict[Path, ReadStudy | Outcome]:
        with self._new_pool(min(self.processes, len(entries))) as pool:
            futures = [self._submit(pool, entry) for entry in entries]
            done = dict(zip(entries, map(_result_unless_broken, futures), strict=True))
        lost = [entry for entry, result in done.items() if result is None]
        found: dict[Path, ReadStudy | Outcome] = {e: r for e, r in done.items() if r is not None}
        if lost and len(entries) == 1:
            found[lost[0]] = Outcome(lost[0].name, FAILED, READER_DIED)
        elif len(lost) == len(entries):  # nothing finished: which one kills is unknown, halve
            found |= self.read_isolating(lost[: len(lost) // 2])
            found |= self.read_isolating(lost[len(lost) // 2 :])
        elif lost:
            found |= self.read_isolating(lost)
        return {entry: found[entry] for entry in entries}

    def shutdown(self) -> None:
        self.pool.shutdown(cancel_futures=True)


def _read(future: Future[ReadStudy | Outcome]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


def _result_unless_broken(future: Future[ReadStudy | Outcome]) -> ReadStudy | Outcome | None:
    try:
        return future.result()
    except BrokenProcessPool:
        return None


def read_batches(
    batches: Sequence[Sequence[Path]], image_size: int, readers: int
) -> Iterator[list[ReadStudy | Outcome]]:
    """Each batch read, in order. With ``readers`` processes, the next ``READ_AHEAD`` batches are
    read while the caller decodes this one; no further, so a large archive does not pile up."""
    if readers == 0:
        for batch in batches:
            yield [read_entry(entry, image_size) for entry in batch]
        return
    yield from read_in_processes(batches, Readers(readers, image_size))


def read_in_processes(
    batches: Sequence[Sequence[Path]], readers: Readers
) -> Iterator[list[ReadStudy | Outcome]]:
    queued = iter(batches)
    pending = deque(
        (batch, readers.submit(batch)) for batch in itertools.islice(queued, READ_AHEAD)
    )
    try:
        while pending:
            batch, futures = pending.popleft()
            read, broke = readers.results(batch, futures)
            if broke:
                pending = deque((waiting, readers.revive(waiting, f)) for waiting, f in pending)
            pending.extend((next_, readers.submit(next_)) for next_ in itertools.islice(queued, 1))
            yield read
    finally:
        readers.shutdown()


def draft_batch(
    read: Sequence[ReadStudy | Outcome],
    generator: ReportGenerator,
    out: Path,
    seconds: StageSeconds,
) -> list[Outcome]:
    """Decode the readable studies of a batch together and write each draft, in entry order."""
    import dicom

    start = time.perf_counter()
    readable = [item for item in read if isinstance(item, ReadStudy)]
    reports = iter(generator.generate([item.pixels for item in readable]) if readable else [])
    decoded = time.perf_counter()
    outcomes = []
    for item in read:
        if isinstance(item, Outcome):
            outcomes.append(item)
            continue
        report, name = next(reports), item.entry.name
        try:
            write_draft(item.study, report, out / name)
            outcomes.append(Outcome(name, DRAFTED))
        except (dicom.DicomError, OSError) as error:
            outcomes.append(Outcome(name, FAILED, f"writing the draft: {error}"))
    seconds.decode += decoded - start
    seconds.write += time.perf_counter() - decoded
    return outcomes


def write_manifest(out: Path, outcomes: Sequence[Outcome]) -> None:
    from dicom.bundle import write_atomically

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["entry", "status", "detail"])
    writer.writerows((o.entry, o.status, o.detail) for o in outcomes)
    write_atomically(out / MANIFEST, text.getvalue().encode())


def draft_archive(
    root: Path,
    out: Path,
    generator: ReportGenerator,
    seconds: StageSeconds,
    readers: int = 0,
    on_batch: Callable[[list[Outcome]], None] | None = None,
) -> list[Outcome]:
    """Draft every entry of ``root`` not drafted yet, in batches of ``generator.batch_size``,
    reading in ``readers`` processes beside the model (0: in this one)."""
    entries = study_entries(root, out)
    out.mkdir(parents=True, exist_ok=True)
    outcomes = {e: Outcome(e.name, ALREADY_DRAFTED) for e in entries if is_drafted(out / e.name)}
    pending, size = [e for e in entries if e not in outcomes], generator.batch_size
    todo = [pending[first : first + size] for first in range(0, len(pending), size)]
    reads = read_batches(todo, generator.image_size, readers)
    for batch in todo:
        waiting = time.perf_counter()
        read = next(reads)
        seconds.read += time.perf_counter() - waiting
        done = draft_batch(read, generator, out, seconds)
        outcomes.update(zip(batch, done, strict=True))
        write_manifest(out, [outcomes[e] for e in entries if e in outcomes])
        if on_batch:
            on_batch(done)
    write_manifest(out, [outcomes[e] for e in entries])
    return [outcomes[e] for e in entries]


def count_outcomes(outcomes: Sequence[Outcome]) -> dict[str, int]:
    return {s: sum(o.status == s for o in outcomes) for s in (DRAFTED, ALREADY_DRAFTED, FAILED)}


def report_archive(
    archive: Annotated[
        Path, typer.Argument(help="A folder with one study per entry (file, folder, ZIP/TAR).")
    ],
    out: OutOption = Path("archive-reports"),
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
