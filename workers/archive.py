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

import csv
import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from workers.drafting import write_draft
from workers.readers import (
    ALREADY_DRAFTED,
    DRAFTED,
    FAILED,
    Outcome,
    ReadStudy,
    read_batches,
)

if TYPE_CHECKING:
    from model.report import ReportGenerator

MANIFEST = "archive.csv"


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
