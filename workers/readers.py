"""Reading archive entries in processes of their own, so that a decoder's crash or hang costs one
entry, not the archive or the worker.

Each reader is a spawned process with a pipe of its own (``Reader``); a thread of the drafting
process hands entries out and takes results in (``Readers``), so readers keep reading while the
caller decodes and writes a batch. A dead reader's entry is known exactly; it is read again by a
fresh reader, alone, and recorded as failed only if that one dies too. An entry whose reading never
finishes fails alone after ``READ_TIMEOUT_SECONDS``.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, cast

from workers.drafting import pick_image

if TYPE_CHECKING:
    import numpy as np

    import dicom

READ_AHEAD = 2  # batches read beyond the one being decoded
# Reading a radiograph costs ~5x drafting it at batch 64, so reading pays only when spread over
# several processes: on 2 cores one reader process was slower than reading in the model's
# process and two were faster (benchmarks/results/archive_drafting.md).
DEFAULT_READERS = min(8, os.cpu_count() or 1) if (os.cpu_count() or 1) > 1 else 0
DRAFTED, ALREADY_DRAFTED, FAILED = "drafted", "already drafted", "failed"


@dataclass(frozen=True)
class Outcome:
    """What became of one entry, as a row of ``archive.csv`` says it: ``detail`` says why it
    failed, in the reader's words; ``seconds`` is what the entry cost (reading, its share of
    the model's batch, writing); ``folder`` is where its draft is ("" when there is none)."""

    entry: str
    status: str
    detail: str = ""
    seconds: float = 0.0
    study_instance_uid: str = ""
    engine: str = ""
    folder: str = ""


@dataclass(frozen=True)
class ReadStudy:
    """One entry read: its headers, its model input, and the seconds its reading took."""

    entry: Path
    study: dicom.Study
    pixels: np.ndarray
    seconds: float = 0.0


def read_entry(entry: Path, image_size: int) -> ReadStudy | Outcome:
    """The model input and headers of one entry, or its failure in the reader's words.

    The full-resolution pixels are released once the model input is made, so a batch waiting
    for the model holds ~64 KB a study instead of 20-40 MB, and a reader process sends little
    back.
    """
    import dicom

    start = time.perf_counter()
    try:
        study = dicom.read_study(entry)
        pixels = dicom.to_model_input(pick_image(study), image_size)
    except dicom.DicomError as error:
        return Outcome(entry.name, FAILED, str(error), time.perf_counter() - start)
    return ReadStudy(entry, study.without_pixels(), pixels, time.perf_counter() - start)


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

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # see _children_ignore_sigint
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


@contextlib.contextmanager
def _children_ignore_sigint() -> Iterator[None]:
    """Processes started in this block ignore SIGINT from birth.

    Ctrl-C at a terminal sends SIGINT to the whole process group, readers included; it is for
    the drafting process, which stops them, and a reader interrupted would print a traceback.
    An ignored signal stays ignored across the exec of a spawned process, and Python keeps it
    so; a blocked one does not stay blocked. Only the main thread may change a handler: a
    reader started elsewhere (one replacing a dead reader) ignores SIGINT once it has started.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


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
        on_read: Callable[[], None] | None = None,
    ) -> None:
        self.image_size, self.read, self.read_timeout = image_size, read, read_timeout
        self.on_read = on_read  # called in the dispatcher thread as each entry is done
        with _children_ignore_sigint():
            self.readers: list[Reader | None] = [Reader(image_size, read) for _ in range(processes)]
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
        self._done(read, result)

    def _done(self, read: QueuedRead, result: ReadStudy | Outcome) -> None:
        if self.on_read:
            self.on_read()
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
        self._done(read, Outcome(read.entry.name, FAILED, why))


def read_batches(
    batches: Sequence[Sequence[Path]],
    image_size: int,
    readers: int,
    on_read: Callable[[], None] | None = None,
) -> Generator[list[ReadStudy | Outcome]]:
    """Each batch read, in order. With ``readers`` processes, the next ``READ_AHEAD`` batches are
    read while the caller decodes this one; no further, so a large archive does not pile up.
    ``on_read`` is called as each entry is read (in another thread with reader processes), so
    that progress shows before a whole batch is."""
    if readers == 0:
        for batch in batches:
            yield [_read_in_this_process(entry, image_size, on_read) for entry in batch]
        return
    processes = min(readers, sum(map(len, batches)))  # each started at once: none idle
    yield from read_in_processes(batches, Readers(processes, image_size, on_read=on_read))


def _read_in_this_process(
    entry: Path, image_size: int, on_read: Callable[[], None] | None
) -> ReadStudy | Outcome:
    read = read_entry(entry, image_size)
    if on_read:
        on_read()
    return read


def read_in_processes(
    batches: Sequence[Sequence[Path]], readers: Readers
) -> Generator[list[ReadStudy | Outcome]]:
    queued = iter(batches)
    pending = deque(readers.queue(batch) for batch in itertools.islice(queued, READ_AHEAD))
    try:
        while pending:
            read = readers.results(pending.popleft())
            pending.extend(readers.queue(next_) for next_ in itertools.islice(queued, 1))
            yield read
    finally:
        readers.close()
