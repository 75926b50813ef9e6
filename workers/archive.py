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

``OUT/archive.csv`` (``ArchiveLog``) gets a row as each entry's outcome is known, flushed at
once, so a run interrupted anywhere (Ctrl-C, a killed process) leaves a valid CSV of what it
finished. A second run drafts only the entries without a whole draft (``draft_is_complete``: a
failed entry is tried again, as is one whose files are missing, empty or truncated) and keeps
the rows of the others as the run that drafted them wrote them.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

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
COLUMNS = ("entry", "StudyInstanceUID", "status", "output_folder", "engine", "seconds", "detail")
_OUTCOME_FIELDS = ("entry", "study_instance_uid", "status", "folder", "engine", "seconds", "detail")
"""``Outcome``'s fields in the order of ``COLUMNS``."""


@dataclass
class StageSeconds:
    """Where an archive's time goes. ``read`` is the reading itself, summed over the entries
    (reader processes read side by side, so it can exceed the run's time); ``wait`` is the
    drafting process waiting for reads (all of the reading when it reads itself); ``model`` is
    decoding with labelling; ``write`` is writing the four files."""

    read: float = 0.0
    wait: float = 0.0
    model: float = 0.0
    write: float = 0.0

    def __str__(self) -> str:
        return (
            f"waiting for reads {self.wait:.1f} s (reading took {self.read:.1f} s), "
            f"model (decoding and labelling) {self.model:.1f} s, writing {self.write:.1f} s"
        )


class ArchiveProgress(Protocol):
    """What a caller is told as an archive is drafted (``echocxr report-archive`` shows it)."""

    def planned(self, to_draft: int, kept: int) -> None:
        """Before any reading: how many entries will be drafted, how many are kept as drafted."""

    def read(self) -> None:
        """One entry read; with reader processes this is called from another thread."""

    def finished(self, outcome: Outcome) -> None:
        """One entry drafted or failed, its row already in ``archive.csv``."""


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


def draft_is_complete(folder: Path) -> bool:
    """All four report files are there and read back whole (``dicom.bundle.bundle_damage``)."""
    from dicom.bundle import bundle_damage

    return not bundle_damage(folder)


class ArchiveLog:
    """``OUT/archive.csv`` written as the run goes, one row per entry (``COLUMNS``).

    It starts as the rows kept from earlier runs; each outcome is then appended and flushed
    at once, so wherever the run stops the file is a valid CSV of what it finished. ``sort``
    puts the rows in entry order at the end of a run.
    """

    def __init__(self, out: Path, kept: Iterable[Outcome]) -> None:
        from dicom.bundle import write_atomically

        self.path = out / MANIFEST
        self.rows = {outcome.entry: outcome for outcome in kept}
        write_atomically(self.path, _csv_text(self.rows.values()).encode())
        self.stream: IO[str] = self.path.open("a", encoding="utf-8", newline="")
        self.writer = csv.writer(self.stream, lineterminator="\n")

    def add(self, outcome: Outcome) -> None:
        self.rows[outcome.entry] = outcome
        self.writer.writerow(_csv_row(outcome))
        self.stream.flush()

    def sort(self, entries: Sequence[str]) -> None:
        from dicom.bundle import write_atomically

        self.stream.close()
        rows = [self.rows[name] for name in entries if name in self.rows]
        write_atomically(self.path, _csv_text(rows).encode())

    def __enter__(self) -> ArchiveLog:
        return self

    def __exit__(self, *_: object) -> None:
        self.stream.close()


def read_archive_log(out: Path) -> dict[str, Outcome]:
    """The rows of an earlier run's ``archive.csv`` by entry; none when there is no readable
    one (the drafts are then found by their files, and their rows made from report.json)."""
    try:
        text = (out / MANIFEST).read_text(encoding="utf-8")
        rows = list(csv.DictReader(io.StringIO(text)))
    except (OSError, UnicodeDecodeError, csv.Error):
        return {}
    outcomes = {}
    for row in rows:
        values = dict(
            zip(_OUTCOME_FIELDS, (row.get(column) or "" for column in COLUMNS), strict=True)
        )
        with contextlib.suppress(ValueError):  # a row cut off by a crash mid-write is dropped
            seconds = float(values.pop("seconds") or 0)
            if values["entry"] and values["status"]:
                outcomes[values["entry"]] = Outcome(**values, seconds=seconds)
    return outcomes


def _csv_row(outcome: Outcome) -> list[str]:
    values = asdict(outcome)
    values["seconds"] = f"{outcome.seconds:.2f}"
    return [str(values[name]) for name in _OUTCOME_FIELDS]


def _csv_text(outcomes: Iterable[Outcome]) -> str:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(map(_csv_row, outcomes))
    return text.getvalue()


def kept_row(name: str, folder: Path, earlier: Outcome | None) -> Outcome:
    """The row of a whole draft a run keeps: the earlier run's, when it said it drafted it, else
    one made from its report.json (a run cut off between the draft and its row, or before
    archive.csv had these columns)."""
    if earlier and earlier.status == DRAFTED and earlier.folder:
        return earlier
    document = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    return Outcome(
        name,
        ALREADY_DRAFTED,
        "drafted by an earlier run that archive.csv does not list",
        study_instance_uid=str(document.get("study_instance_uid", "")),
        engine=str(document.get("engine", "")),
        folder=str(folder),
    )


def earlier_drafts(entries: Sequence[Path], out: Path) -> tuple[dict[str, Outcome], dict[str, str]]:
    """What earlier runs left in ``out``: the rows of the entries with a whole draft, to keep,
    and why each other entry with a draft folder is drafted again (its draft is damaged)."""
    from dicom.bundle import bundle_damage

    earlier, kept, damage = read_archive_log(out), {}, {}
    for entry in entries:
        folder = (out / entry.name).resolve()
        if not folder.is_dir():
            continue
        why = bundle_damage(folder)
        if why:
            damage[entry.name] = f"drafted again: the earlier draft was damaged ({why})"
        else:
            kept[entry.name] = kept_row(entry.name, folder, earlier.get(entry.name))
    return kept, damage


def draft_batch(
    read: Sequence[ReadStudy | Outcome],
    generator: ReportGenerator,
    out: Path,
    seconds: StageSeconds,
) -> Iterator[Outcome]:
    """Decode the readable studies of a batch together, then write each draft, yielding each
    outcome, in entry order, as soon as it is known.

    Each report.json gets the study's own timings: ``read_s`` (its reading), ``model_s`` (the
    batch's model seconds, decoding and labelling, divided by the studies in the batch: they are
    decoded together), ``model_batch_s`` and ``model_batch_size`` (that batch), and ``write_s``.
    """
    import dicom

    start = time.perf_counter()
    readable = [item for item in read if isinstance(item, ReadStudy)]
    reports = iter(generator.generate([item.pixels for item in readable]) if readable else [])
    batch_s = time.perf_counter() - start
    seconds.model += batch_s
    seconds.read += sum(item.seconds for item in read)
    share = batch_s / max(1, len(readable))
    for item in read:
        if isinstance(item, Outcome):
            yield item
            continue
        report, name, started = next(reports), item.entry.name, time.perf_counter()
        timings = {
            "read_s": item.seconds,
            "model_s": share,
            "model_batch_s": batch_s,
            "model_batch_size": float(len(readable)),
        }
        uid, folder = item.study.study_instance_uid, (out / name).resolve()
        try:
            write_draft(item.study, report, folder, timings)
            outcome = Outcome(name, DRAFTED, "", 0.0, uid, report.engine, str(folder))
        except (dicom.DicomError, OSError) as error:
            outcome = Outcome(name, FAILED, f"writing the draft: {error}", 0.0, uid, report.engine)
        written = time.perf_counter() - started
        seconds.write += written
        yield replace(outcome, seconds=item.seconds + share + written)


def draft_archive(
    root: Path,
    out: Path,
    generator: ReportGenerator,
    seconds: StageSeconds,
    readers: int = 0,
    progress: ArchiveProgress | None = None,
) -> list[Outcome]:
    """Draft every entry of ``root`` without a whole draft in ``out``, in batches of
    ``generator.batch_size``, reading in ``readers`` processes beside the model (0: in this one).

    Returns this run's outcomes in entry order; a whole draft kept from an earlier run is
    ``already drafted`` here, while its row in archive.csv stays as the run that drafted it
    wrote it. An entry drafted again because its earlier draft was damaged says so in ``detail``.
    """
    entries = study_entries(root, out)
    out.mkdir(parents=True, exist_ok=True)
    kept, damage = earlier_drafts(entries, out)
    pending = [entry for entry in entries if entry.name not in kept]
    size = generator.batch_size
    todo = [pending[first : first + size] for first in range(0, len(pending), size)]
    if progress:
        progress.planned(len(pending), len(kept))
    done: dict[str, Outcome] = {}
    reads = read_batches(todo, generator.image_size, readers, progress.read if progress else None)
    with ArchiveLog(out, kept.values()) as log, contextlib.closing(reads):
        for _ in todo:
            waiting = time.perf_counter()
            read = next(reads)
            seconds.wait += time.perf_counter() - waiting
            for outcome in draft_batch(read, generator, out, seconds):
                if outcome.status == DRAFTED and outcome.entry in damage:
                    outcome = replace(outcome, detail=damage[outcome.entry])
                done[outcome.entry] = outcome
                log.add(outcome)
                if progress:
                    progress.finished(outcome)
        log.sort([entry.name for entry in entries])
    this_run = {**{n: replace(o, status=ALREADY_DRAFTED) for n, o in kept.items()}, **done}
    return [this_run[entry.name] for entry in entries]


def count_outcomes(outcomes: Sequence[Outcome]) -> dict[str, int]:
    return {s: sum(o.status == s for o in outcomes) for s in (DRAFTED, ALREADY_DRAFTED, FAILED)}
