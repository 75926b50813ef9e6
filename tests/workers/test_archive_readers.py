"""Reader processes that die (OOM killer, a decoder's crash) cost their entry, not the archive."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.archives import phantom_archive, read_or_die, report_archive
from workers.readers import (
    FAILED,
    READ_TIMED_OUT,
    READER_DIED,
    Outcome,
    Readers,
    ReadStudy,
    read_in_processes,
)

pytestmark = pytest.mark.e2e


def test_an_entry_that_kills_its_reader_fails_alone_and_the_others_are_read(
    tmp_path: Path,
) -> None:
    """The killer is read ahead, beside the first batch, and it shares its batch with a good
    entry: only the killer fails, every other entry is read, in order."""
    studies = phantom_archive(tmp_path, 5)
    killer = Path(shutil.copy(studies[0], tmp_path / "kills-reader.dcm"))
    entries = [studies[0], studies[1], studies[2], killer, studies[3], studies[4]]
    batches = [entries[:3], entries[3:5], entries[5:]]

    read = list(read_in_processes(batches, Readers(2, 64, read=read_or_die)))

    assert [len(batch) for batch in read] == [3, 2, 1]
    results = [result for batch in read for result in batch]
    assert results[3] == Outcome("kills-reader.dcm", FAILED, READER_DIED)
    good = [result for i, result in enumerate(results) if i != 3]
    assert [(type(r), getattr(r, "entry", None)) for r in good] == [
        (ReadStudy, entry) for entry in entries if entry != killer
    ]


def test_an_entry_whose_reader_died_once_is_read_again_as_is_a_path_queued_twice(
    tmp_path: Path,
) -> None:
    studies = phantom_archive(tmp_path, 2)
    once = Path(shutil.copy(studies[0], tmp_path / "kills-reader-once.dcm"))
    entries = [studies[0], once, studies[1], studies[0]]
    readers = Readers(2, 64, read=read_or_die)
    try:
        results = readers.results(readers.queue(entries))
    finally:
        readers.close()

    assert once.with_name(once.name + ".killed").exists(), "its first reader did not die"
    assert [(type(r), getattr(r, "entry", None)) for r in results] == [
        (ReadStudy, entry) for entry in entries
    ]


def test_readers_go_on_reading_while_their_results_are_not_asked_for(tmp_path: Path) -> None:
    """What the caller's decoding and writing of a batch looks like to the readers: nobody
    takes results, and the entries queued behind the first reads are read all the same."""
    studies = phantom_archive(tmp_path, 5)
    readers = Readers(2, 64, read=read_or_die)
    try:
        numbers = readers.queue(studies)
        markers = [study.with_name(study.name + ".read") for study in studies]
        deadline = time.monotonic() + 120
        while not all(marker.exists() for marker in markers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [marker.exists() for marker in markers] == [True] * len(studies)
        assert [getattr(r, "entry", None) for r in readers.results(numbers)] == studies
    finally:
        readers.close()


def test_an_entry_whose_reading_does_not_finish_fails_alone_after_the_timeout(
    tmp_path: Path,
) -> None:
    """Its reader is killed after ``read_timeout`` seconds, twice (the second time read alone),
    and the entry beside it is read. The readers are started first, under the default timeout,
    so that a short one then times only reads, not a slow start under load."""
    studies = phantom_archive(tmp_path, 2)
    hangs = Path(shutil.copy(studies[0], tmp_path / "hangs.dcm"))
    readers = Readers(2, 64, read=read_or_die)
    try:
        readers.results(readers.queue(studies))
        readers.read_timeout = 3
        results = readers.results(readers.queue([hangs, studies[1]]))
    finally:
        readers.close()

    assert results[0] == Outcome("hangs.dcm", FAILED, READ_TIMED_OUT.format(seconds=3))
    assert isinstance(results[1], ReadStudy) and results[1].entry == studies[1]
    assert not multiprocessing.active_children()


def test_what_reading_raises_is_raised_in_the_drafting_process_and_no_reader_is_left(
    tmp_path: Path,
) -> None:
    """A bug in a reader fails the run as it would with reading in this process, not as a
    dead reader's entry; the readers end with it."""
    studies = phantom_archive(tmp_path, 2)
    raises = Path(shutil.copy(studies[0], tmp_path / "raises.dcm"))

    with pytest.raises(LookupError, match="a bug in the reader"):
        list(read_in_processes([[studies[0], raises], [studies[1]]], Readers(2, 64, read_or_die)))
    assert not multiprocessing.active_children()


def test_a_reader_killed_from_outside_mid_archive_loses_no_draft(tmp_path: Path) -> None:
    """A reader killed while the archive is drafted (what the OOM killer does under memory
    pressure from elsewhere): its entries are read again and the run drafts every study."""
    studies = phantom_archive(tmp_path / "archive", 4)
    killed: list[int] = []

    def kill_first_reader() -> None:
        deadline = time.monotonic() + 60
        while not killed and time.monotonic() < deadline:
            for child in multiprocessing.active_children():
                os.kill(child.pid or 0, signal.SIGKILL)
                killed.append(child.pid or 0)
                break
            time.sleep(0.01)

    killer = threading.Thread(target=kill_first_reader)
    killer.start()
    result = report_archive(tmp_path / "archive", tmp_path / "out", "--batch-size", "2", readers=2)
    killer.join()

    assert killed, "no reader process was seen to kill"
    assert result.exit_code == 0, result.output
    assert f"{len(studies)} drafted, 0 already drafted, 0 failed" in result.output


def test_readers_end_when_the_process_they_read_for_is_killed() -> None:
    """A parent killed outright (the OOM killer, a hard time limit) leaves no reader behind."""
    killed_parent = """
import os, signal
from pathlib import Path
from workers.readers import Readers
readers = Readers(1, 64)
readers.results(readers.queue([Path("no-such-study.dcm")]))  # the reader is up, and idle
print(readers.readers[0].process.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""
    parent = subprocess.Popen([sys.executable, "-c", killed_parent], stdout=subprocess.PIPE)
    assert parent.stdout is not None
    reader = int(parent.stdout.readline())  # the reader holds the pipe: do not read to its end
    assert parent.wait(timeout=60) == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while running(reader) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running(reader)


def running(pid: int) -> bool:
    """Still running: an orphan that has ended is a zombie until init reaps it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
