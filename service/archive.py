"""Drafting a whole archive in batches: the throughput use; `echocxr report` is the latency one.

An archive is a folder holding one study per entry (a DICOM file, a folder, a ZIP/TAR or a
DICOMDIR: whatever `echocxr report` reads). The model drafts the studies in batches (at batch 64,
per draft, AR spends a sixth and one step under half of their batch-1 decoding time), reader
processes read the DICOM beside it (reading is ~75% of an archive's time;
``benchmarks/results/archive_drafting.md``), and each draft is written by ``write_draft``, as a
single report is, into ``OUT/<entry name>/``.

A bad entry costs only itself: it is recorded as failed, with the reader's message, and the
rest of the archive is drafted. That holds too for an entry that kills its reader process (a
decoder's crash, the OOM killer) or never finishes (a stuck decoder, after 10 minutes): each
reader process has a pipe of its own, so ``Readers`` knows the entry a dead one held, and reads
it again, alone, before recording it as failed.
``OUT/archive.csv`` is rewritten after every batch, so it always says what is done; a second run
drafts only the entries without all four report files (a failed entry is tried again, a drafted
one is kept).
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import multiprocessing
import multiprocessing.connection
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

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


ReadEntry = Callable[[Path, int], ReadStudy | Outcome]
READER_DIED = (
    "reading this entry failed twice, the second time with no other entry being read: it "
    "killed its reader process (out of memory, or a decoder crashed); check the file with "
    "`echocxr ingest`"
)
# A full-resolution radiograph reads in ~0.3-0.6 s here (archive_drafting.md); a decoder stuck
# on a damaged file must cost its entry, not stall the archive.
READ_TIMEOUT_SECONDS = 600.0
READ_TIMED_OUT = (
    "reading this entry failed twice, the second time with no other entry being read: it took "
    "over {seconds:.0f} s (a decoder that does not finish); check the file with `echocxr ingest`"
)


@dataclass(frozen=True)
class QueuedRead:
    """An entry waiting for, or held by, a reader; numbered in the order queued, as a caller's
    batches may name the same path twice."""

    number: int
    entry: Path


class Reader:
    """One reader process with a pipe of its own: when it dies (the OOM killer, a decoder's
    crash), it takes down only the entry it was reading, and which entry that was is known.

    Readers were a ``ProcessPoolExecutor`` before, and that hung: its workers share one queue
    and its lock, and on Python 3.11 a worker killed while the pool was still starting the
    others could leave one of them unterminated, which the pool's shutdown then waited for
    forever (in one run of the first eight of the test that kills a reader mid-archive).
    """

    def __init__(self, image_size: int, read: ReadEntry) -> None:
        # spawn, not fork: the parent holds torch's thread pools, which a forked child can
        # deadlock on
        context = multiprocessing.get_context("spawn")
        self.connection, reader_end = context.Pipe()
        self.process = context.Process(
            target=_serve_reads, args=(reader_end, image_size, read), daemon=True
        )
        self.process.start()
        reader_end.close()  # the reader's copy is now its only one: its death is an EOF here
        self.reading: QueuedRead | None = None
        self.started = 0.0  # time.monotonic() when it was handed what it is reading

    def start(self, read: QueuedRead) -> None:
        self.reading, self.started = read, time.monotonic()
        with contextlib.suppress(OSError):  # died while idle: ``finish`` finds the pipe closed
            self.connection.send(read.entry)

    def finish(self) -> ReadStudy | Outcome | None:
        """What the reader read, None if it died reading; what reading raised is raised here,
        as it would be had the entry been read in this process."""
        try:
            result = self.connection.recv()
        except (EOFError, OSError):
            return None
        self.reading = None
        if isinstance(result, Exception):
            raise result
        return cast("ReadStudy | Outcome", result)

    def stop(self) -> None:
        self.process.kill()  # it writes nothing, so nothing is left half-done; a stuck decoder
        # may not answer a gentler signal
        self.process.join()
        self.connection.close()


def _serve_reads(connection: Connection, image_size: int, read: ReadEntry) -> None:
    """A reader's life: read each entry sent until the pipe closes. A parent killed outright
    (the OOM killer, ``kill -9``) closes it too, and nothing else would tell the reader."""
    import torch

    torch.set_num_threads(1)  # a reader resizes with torch (MONAI); readers are many
    while True:
        try:
            entry = connection.recv()
        except EOFError:
            return
        try:
            result: ReadStudy | Outcome | Exception = read(entry, image_size)
        except Exception as error:
            result = error
        connection.send(result)


class Readers:
    """Reader processes that read queued entries in the order queued and survive dying.

    A thread of this process hands entries out and takes results in, so the readers go on
    reading while the caller decodes and writes a batch (without it they would stand idle for
    that time, ~6 s of every 64-study batch: ``benchmarks/results/archive_readers.md``).

    An entry whose reader died, or took over ``read_timeout`` seconds (its reader is then
    killed), is read once more by a fresh reader, alone (nothing else is handed out meanwhile),
    so that memory or cores taken by the other reads cannot be the cause; only if that reader
    fails too is the entry recorded as failed.
    """

    def __init__(
        self,
        processes: int,
        image_size: int,
        read: ReadEntry = read_entry,
        read_timeout: float = READ_TIMEOUT_SECONDS,
    ) -> None:
        self.image_size, self.read, self.read_timeout = image_size, read, read_timeout
        self.readers: list[Reader | None] = [None] * processes  # started when first needed
        self.waiting: deque[QueuedRead] = deque()
        self.to_read_alone: deque[QueuedRead] = deque()
        self.failed_once: set[int] = set()
        self.done: dict[int, ReadStudy | Outcome] = {}
        self.queued, self.closing = 0, False
        self.failure: Exception | None = None
        self.changed = threading.Condition()  # guards waiting, done and failure
        self.woken, self.wake = multiprocessing.Pipe(duplex=False)
        self.dispatcher = threading.Thread(target=self._dispatch, daemon=True)
        self.dispatcher.start()

    def queue(self, entries: Sequence[Path]) -> list[int]:
        """Queue ``entries``; the numbers returned fetch them from ``results``."""
        with self.changed:
            numbers = list(range(self.queued, self.queued + len(entries)))
            self.queued += len(entries)
            self.waiting.extend(map(QueuedRead, numbers, entries))
        self.wake.send_bytes(b"")
        return numbers

    def results(self, numbers: Sequence[int]) -> list[ReadStudy | Outcome]:
        """The reads numbered, once all are done; what reading raised is raised here."""
        with self.changed:
            self.changed.wait_for(lambda: self.failure or all(n in self.done for n in numbers))
            if self.failure:
                raise self.failure
            return [self.done.pop(number) for number in numbers]

    def close(self) -> None:
        self.closing = True
        self.wake.send_bytes(b"")
        self.dispatcher.join()
        for reader in self.readers:
            if reader is not None:
                reader.stop()
        self.wake.close()
        self.woken.close()

    def _dispatch(self) -> None:
        try:
            while not self.closing:
                self._hand_out()
                self._collect()
        except Exception as error:
            with self.changed:
                self.failure = error
                self.changed.notify_all()

    def _busy(self) -> list[tuple[Reader, QueuedRead]]:
        return [(r, r.reading) for r in self.readers if r is not None and r.reading is not None]

    def _next_read(self) -> QueuedRead | None:
        if self.to_read_alone:
            return None if self._busy() else self.to_read_alone.popleft()
        with self.changed:
            return self.waiting.popleft() if self.waiting else None

    def _hand_out(self) -> None:
        for index, reader in enumerate(self.readers):
            if reader is None or reader.reading is None:
                read = self._next_read()
                if read is None:
                    return
                reader = self.readers[index] = reader or Reader(self.image_size, self.read)
                reader.start(read)

    def _collect(self) -> None:
        """Wait until a reader finishes, dies or runs out of time, or the caller queues or
        closes."""
        busy = self._busy()
        first = min((reader.started for reader, _ in busy), default=None)
        timeout = None if first is None else max(0.0, first + self.read_timeout - time.monotonic())
        connections = [self.woken] + [reader.connection for reader, _ in busy]
        ready = multiprocessing.connection.wait(connections, timeout)
        while self.woken.poll():
            self.woken.recv_bytes()
        for reader, read in busy:
            if reader.connection in ready:
                self._take(reader, read)
            elif time.monotonic() - reader.started > self.read_timeout:
                self._reader_failed(reader, read, READ_TIMED_OUT.format(seconds=self.read_timeout))

    def _take(self, reader: Reader, read: QueuedRead) -> None:
        result = reader.finish()
        if result is None:
            self._reader_failed(reader, read, READER_DIED)
            return
        with self.changed:
            self.done[read.number] = result
            self.changed.notify_all()

    def _reader_failed(self, reader: Reader, read: QueuedRead, why: str) -> None:
        reader.stop()
        self.readers[self.readers.index(reader)] = None
        if read.number not in self.failed_once:
            self.failed_once.add(read.number)
            self.to_read_alone.append(read)
            return
        with self.changed:
            self.done[read.number] = Outcome(read.entry.name, FAILED, why)
            self.changed.notify_all()


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
    pending = deque(readers.queue(batch) for batch in itertools.islice(queued, READ_AHEAD))
    try:
        while pending:
            read = readers.results(pending.popleft())
            pending.extend(readers.queue(next_) for next_ in itertools.islice(queued, 1))
            yield read
    finally:
        readers.close()


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
