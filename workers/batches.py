"""Archives through the service: a batch of studies drafted in chunks by every worker.

A batch is made from a server folder (one study per entry, as ``echocxr report-archive`` reads
it), an uploaded ZIP/TAR of such a folder, or the studies a PACS query (QIDO-RS) finds. Its
studies are ``BatchItem`` rows, numbered and cut into chunks of ``Settings.batch_chunk``; each
chunk is one task on the ``generate`` queue (``echocxr.batch_chunk``; the embedded pool runs the
same ``run_chunk``), so every worker takes chunks of the same batch.

``run_chunk`` is idempotent under redelivery: it claims only the chunk's items still queued, or
running (their worker died: ``acks_late`` gave the chunk back), and records each draft only if
its item is still running, so a study is recorded exactly once; a study whose chunk killed its
worker ``Settings.draft_attempts`` times fails alone. Entries are read by the reader processes of
``workers.readers``, so a decoder that crashes or hangs costs its study, not the worker.

The drafts are written as ``echocxr report`` writes them (``write_draft``) into the batch's
folder, ``<batches_dir>/<batch id>/reports/<entry>/``; the items keep the text, the labels and
where the time went.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from workers.config import Settings
from workers.db import session_scope
from workers.records import (
    CANCELLED,
    DONE,
    FAILED,
    PACS_QUERY,
    QUEUED,
    RUNNING,
    Batch,
    BatchItem,
    now,
)

if TYPE_CHECKING:
    from model.report import Report as DraftedReport
    from workers.readers import Outcome, Readers, ReadStudy

logger = logging.getLogger(__name__)

UNFINISHED = (QUEUED, RUNNING)
ITEM_DIED = (
    "the study's chunk was started {attempts} times and its worker died each time (out of "
    "memory, or a decoder crashed); check the file with `echocxr ingest`"
)
NOT_PULLED = "the PACS holds no series of this study in the modalities pulled ({modalities})"
# an uploaded archive holds many studies: more members than one study's upload may have
ARCHIVE_FILES = 50_000


class BatchSourceError(ValueError):
    """What was asked for cannot become a batch (a folder outside the allowed roots, an empty
    archive, a PACS query that found nothing); nothing was recorded."""


# --- making a batch ---------------------------------------------------------------------------


def folder_entries(settings: Settings, folder: str) -> tuple[Path, list[str]]:
    """The resolved folder and its entries, if it lies under one of ``Settings.batch_roots``."""
    from workers.archive import ArchiveFolderError, study_entries

    roots = settings.batch_root_folders
    path = Path(folder).resolve()
    if not any(path == root or path.is_relative_to(root) for root in roots):
        allowed = ", ".join(map(str, roots)) or "none is configured"
        raise BatchSourceError(
            f"{folder} is not under a folder the service may read archives from ({allowed}); "
            "an administrator sets ECHOCXR_BATCH_ROOTS, or upload the archive instead"
        )
    try:
        entries = [entry.name for entry in study_entries(path, settings.batches_dir)]
    except ArchiveFolderError as error:
        raise BatchSourceError(str(error)) from None
    return path, _some(entries, folder)


def unpack_upload(settings: Settings, batch_id: str, data: bytes) -> tuple[Path, list[str]]:
    """Write an uploaded ZIP/TAR into the batch's ``input/`` folder; its top-level entries.

    The archive is checked as an upload of one study is (``dicom.sources.gather``: member count,
    sizes before inflating, ``..`` and absolute paths, links), only with room for more files.
    An archive holding one folder (``archive/study-1.dcm …``) is that folder's entries.
    """
    from dicom import DicomError
    from dicom.sources import ReadLimits, gather

    try:
        members = gather(data, ReadLimits(max_files=ARCHIVE_FILES))
    except DicomError as error:
        raise BatchSourceError(str(error)) from None
    if len(members) == 1 and members[0].name == "<bytes>":
        raise BatchSourceError("the upload is not a ZIP or TAR archive; archive the folder")
    paths = [PurePosixPath(member.name.replace("\\", "/")) for member in members]
    tops = {path.parts[0] for path in paths if len(path.parts) > 1}
    strip = 1 if len(tops) == 1 and all(len(path.parts) > 1 for path in paths) else 0
    folder = settings.batches_dir / batch_id / "input"
    for member, path in zip(members, paths, strict=True):
        target = folder.joinpath(*path.parts[strip:])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(member.data)
    entries = sorted({path.parts[strip] for path in paths if not path.name.startswith(".")})
    return folder, _some(entries, "the archive")


def pacs_entries(settings: Settings, since: str, until: str, modality: str) -> list[str]:
    """StudyInstanceUIDs of the PACS's studies dated ``since``-``until`` (YYYYMMDD) holding
    ``modality`` (QIDO-RS); raises ``dicom.DicomWebError`` when the PACS fails."""
    from workers.pacs import peer

    query = {"StudyDate": f"{since}-{until}"}
    if modality:
        query["ModalitiesInStudy"] = modality
    with peer(settings) as client:
        found = [str(study.StudyInstanceUID) for study in client.search_studies(query)]
    return _some(sorted(set(found)), f"the PACS query {query}")


def _some(entries: list[str], where: str) -> list[str]:
    if not entries:
        raise BatchSourceError(f"{where} holds no studies; nothing to draft")
    return entries


def record_batch(
    session: Session,
    settings: Settings,
    *,
    kind: str,
    source: str,
    folder: str,
    entries: Sequence[str],
    user: tuple[str, str],
    batch_id: str | None = None,
) -> Batch:
    """The batch and one queued item per entry, cut into chunks, in the caller's transaction;
    ``user`` is (id, name) of who asked."""
    size = settings.batch_chunk
    batch = Batch(
        source_kind=kind,
        source=source[:500],
        folder=folder,
        state=QUEUED,
        total=len(entries),
        chunk_size=size,
        created_by_id=user[0],
        created_by=user[1],
    )
    if batch_id is not None:
        batch.id = batch_id
    session.add(batch)
    session.flush()
    session.add_all(
        BatchItem(
            batch_id=batch.id,
            number=n,
            chunk=n // size,
            entry=e,
            state=QUEUED,
            attempts=0,
            timings={},
        )
        for n, e in enumerate(entries)
    )
    session.flush()
    return batch


# --- handing chunks over ----------------------------------------------------------------------


def chunks_of(session: Session, batch_id: str) -> list[int]:
    """The chunks of a batch that still have studies to draft."""
    query = (
        select(BatchItem.chunk)
        .where(BatchItem.batch_id == batch_id, BatchItem.state.in_(UNFINISHED))
        .distinct()
        .order_by(BatchItem.chunk)
    )
    return list(session.scalars(query))


def pending_chunks(settings: Settings, stale_before: datetime | None) -> list[tuple[str, int]]:
    """Chunks to hand over again: with ``stale_before`` None (the embedded pool at start) every
    chunk with a study queued or running; otherwise those with a study queued and never handed
    over, or handed over before ``stale_before`` (a restarted broker may have lost it)."""
    with session_scope(settings.sqlalchemy_url) as session:
        query = (
            select(BatchItem.batch_id, BatchItem.chunk, BatchItem.state, BatchItem.dispatched_at)
            .join(Batch, Batch.id == BatchItem.batch_id)
            .where(Batch.state.in_(UNFINISHED), BatchItem.state.in_(UNFINISHED))
            .order_by(Batch.created_at, BatchItem.chunk)
        )
        rows = session.execute(query).all()
    due: dict[tuple[str, int], None] = {}
    for batch_id, chunk, state, dispatched in rows:
        if stale_before is None or (
            state == QUEUED and (dispatched is None or dispatched < stale_before)
        ):
            due[(batch_id, chunk)] = None
    return list(due)


def mark_chunk_dispatched(settings: Settings, batch_id: str, chunk: int) -> None:
    with session_scope(settings.sqlalchemy_url) as session:
        session.execute(
            update(BatchItem)
            .where(BatchItem.batch_id == batch_id, BatchItem.chunk == chunk)
            .values(dispatched_at=now())
        )


# --- drafting a chunk -------------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    """A study of the chunk taken for drafting."""

    item_id: str
    entry: str


def run_chunk(settings: Settings, batch_id: str, chunk: int) -> int:
    """Draft the chunk's studies not drafted yet; returns how many this call recorded."""
    from workers.generators import report_generator, resolve_profile
    from workers.jobs import failure_message

    claimed, batch = claim_chunk(settings, batch_id, chunk)
    if not claimed or batch is None:
        settle(settings, batch_id)
        return 0
    try:
        generator = report_generator(resolve_profile(settings), settings)
    except Exception as error:
        for item in claimed:
            fail_item(settings, item.item_id, failure_message(error))
        settle(settings, batch_id)
        return 0
    out = report_folder(settings, batch_id)
    with staged(settings, batch, claimed) as (paths, not_staged):
        for item_id, why in not_staged.items():
            fail_item(settings, item_id, why)
        staged_items = [item for item in claimed if item.item_id not in not_staged]
        recorded = _draft(settings, staged_items, paths, generator, out)
    settle(settings, batch_id)
    return recorded


def claim_chunk(
    settings: Settings, batch_id: str, chunk: int
) -> tuple[list[Claimed], Batch | None]:
    """Mark the chunk's queued (and dead-worker running) studies running; the batch running."""
    with session_scope(settings.sqlalchemy_url) as session:
        batch = session.get(Batch, batch_id, with_for_update=True)
        if batch is None or batch.state not in UNFINISHED:
            return [], None
        query = (
            select(BatchItem)
            .where(
                BatchItem.batch_id == batch_id,
                BatchItem.chunk == chunk,
                BatchItem.state.in_(UNFINISHED),
            )
            .order_by(BatchItem.number)
            .with_for_update()
        )
        claimed = []
        for item in session.scalars(query):
            if item.attempts >= settings.draft_attempts:
                _end(item, FAILED, ITEM_DIED.format(attempts=item.attempts))
                continue
            item.state, item.attempts, item.started_at = RUNNING, item.attempts + 1, now()
            claimed.append(Claimed(item.id, item.entry))
        if claimed and batch.state == QUEUED:
            batch.state, batch.started_at = RUNNING, batch.started_at or now()
        session.flush()
        session.expunge(batch)
        return claimed, batch


@contextmanager
def staged(
    settings: Settings, batch: Batch, claimed: list[Claimed]
) -> Iterator[tuple[dict[str, Path], dict[str, str]]]:
    """Where each claimed study can be read (``item id → path``), and why some cannot: a PACS
    query's studies are pulled (WADO-RS) into a scratch folder first."""
    if batch.source_kind != PACS_QUERY:
        yield {c.item_id: Path(batch.folder) / c.entry for c in claimed}, {}
        return
    from dicom import DicomError
    from workers.ingest import as_archive
    from workers.pacs import fetch_study

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.data_dir, prefix=".pulling-") as scratch:
        paths, failed = {}, {}
        for item in claimed:
            try:
                instances = fetch_study(settings, item.entry)
            except DicomError as error:
                failed[item.item_id] = f"pulling the study from the PACS: {error}"
                continue
            if not instances:
                failed[item.item_id] = NOT_PULLED.format(modalities=settings.pacs_modalities)
                continue
            path = Path(scratch) / item.entry
            path.write_bytes(as_archive(instances))
            paths[item.item_id] = path
        yield paths, failed


def _draft(
    settings: Settings,
    items: list[Claimed],
    paths: dict[str, Path],
    generator: Any,
    out: Path,
) -> int:
    """Read the staged studies in reader processes, decode the readable ones together, write
    and record each draft."""
    from workers.readers import ReadStudy

    if not items:
        return 0
    from workers.jobs import failure_message

    start = time.perf_counter()
    entries = [paths[item.item_id] for item in items]
    try:
        read = read_entries(entries, generator.image_size, settings.batch_readers)
    except Exception as error:  # the readers broke, not an entry: recorded, never lost
        for item in items:
            fail_item(settings, item.item_id, failure_message(error))
        return 0
    read_s = (time.perf_counter() - start) / len(items)
    readable = [(i, r) for i, r in zip(items, read, strict=True) if isinstance(r, ReadStudy)]
    for item, outcome in zip(items, read, strict=True):
        if not isinstance(outcome, ReadStudy):
            fail_item(settings, item.item_id, outcome.detail)
    if not readable:
        return 0
    start = time.perf_counter()
    try:
        reports = generator.generate([r.pixels for _, r in readable])
    except Exception as error:
        for item, _ in readable:
            fail_item(settings, item.item_id, failure_message(error))
        return 0
    model_s = (time.perf_counter() - start) / len(readable)
    recorded = 0
    for (item, study), report in zip(readable, reports, strict=True):
        timings = {"read_s": read_s, "model_s": model_s}
        recorded += _write(settings, item, study, report, out, timings)
    return recorded


_readers: dict[tuple[int, int], Readers] = {}
_readers_lock = threading.Lock()


def read_entries(entries: list[Path], image_size: int, processes: int) -> list[ReadStudy | Outcome]:
    """Read a chunk's entries in this process's reader processes (none: in this process).

    The readers live as long as the worker process: starting one costs seconds (it imports
    torch and the decoders), more than reading a chunk. Readers whose dispatching failed are
    replaced.
    """
    from workers.readers import Readers, read_entry

    if processes == 0:
        return [read_entry(entry, image_size) for entry in entries]
    with _readers_lock:
        readers = _readers.get((processes, image_size))
        if readers is None or readers.failure is not None:
            readers = _readers[(processes, image_size)] = Readers(processes, image_size)
    return readers.results(readers.queue(entries))


def close_readers() -> None:
    """Stop this process's reader processes (the embedded server does when it shuts down)."""
    with _readers_lock:
        for readers in _readers.values():
            readers.close()
        _readers.clear()


def _write(
    settings: Settings,
    item: Claimed,
    study: ReadStudy,
    report: DraftedReport,
    out: Path,
    timings: dict[str, float],
) -> int:
    import dicom
    from workers.drafting import write_draft

    start = time.perf_counter()
    try:
        write_draft(study.study, report, out / Path(item.entry).name)
    except (dicom.DicomError, OSError) as error:
        fail_item(settings, item.item_id, f"writing the draft: {error}")
        return 0
    timings = {**timings, "write_s": time.perf_counter() - start}
    return int(finish_item(settings, item.item_id, study, report, timings))


def finish_item(
    settings: Settings,
    item_id: str,
    read: ReadStudy,
    report: DraftedReport,
    timings: dict[str, float],
) -> bool:
    """Record a study's draft, unless another delivery did first or the batch was cancelled."""
    with session_scope(settings.sqlalchemy_url) as session:
        item = session.get(BatchItem, item_id, with_for_update=True)
        if item is None or item.state != RUNNING:
            return False
        item.study_uid = read.study.study_instance_uid[:64]
        item.findings, item.impression = report.findings, report.impression
        item.labels = dict(report.labels) if report.labels is not None else None
        item.timings, item.seconds = timings, sum(timings.values())
        _end(item, DONE, None)
        return True


def fail_item(settings: Settings, item_id: str, why: str) -> None:
    with session_scope(settings.sqlalchemy_url) as session:
        item = session.get(BatchItem, item_id, with_for_update=True)
        if item is not None and item.state in UNFINISHED:
            _end(item, FAILED, why)
    logger.info("batch item %s failed", item_id)


def _end(item: BatchItem, state: str, detail: str | None) -> None:
    item.state, item.detail, item.finished_at = state, detail, now()


def settle(settings: Settings, batch_id: str) -> None:
    """A batch whose studies have all ended is done, or failed when not one study was drafted:
    an archive of nothing but unreadable files must not look like a finished run to whoever
    scripts against the state (``echocxr batch status`` exits non-zero on it)."""
    with session_scope(settings.sqlalchemy_url) as session:
        batch = session.get(Batch, batch_id, with_for_update=True)
        if batch is None or batch.state not in UNFINISHED or chunks_of(session, batch_id):
            return
        drafted = session.scalar(
            select(func.count())
            .select_from(BatchItem)
            .where(BatchItem.batch_id == batch_id, BatchItem.state == DONE)
        )
        batch.state, batch.finished_at = (DONE if drafted else FAILED), now()


def report_folder(settings: Settings, batch_id: str) -> Path:
    return settings.batches_dir / batch_id / "reports"


# --- cancel, resume, summary ------------------------------------------------------------------


def cancel_batch(session: Session, batch: Batch) -> bool:
    """Cancel what is not drafted yet: queued chunks then find nothing to claim, and a running
    chunk's drafts are not recorded. False when the batch had already ended."""
    if batch.state not in UNFINISHED:
        return False
    batch.state, batch.finished_at = CANCELLED, now()
    session.execute(
        update(BatchItem)
        .where(BatchItem.batch_id == batch.id, BatchItem.state.in_(UNFINISHED))
        .values(state=CANCELLED, finished_at=now())
    )
    return True


def resume_batch(session: Session, batch: Batch) -> list[int]:
    """Queue a cancelled batch's cancelled studies again; the chunks to hand over."""
    if batch.state != CANCELLED:
        return []
    session.execute(
        update(BatchItem)
        .where(BatchItem.batch_id == batch.id, BatchItem.state == CANCELLED)
        .values(state=QUEUED, attempts=0, finished_at=None, dispatched_at=None)
    )
    batch.state, batch.finished_at = (QUEUED if batch.started_at is None else RUNNING), None
    session.flush()
    return chunks_of(session, batch.id)


@dataclass(frozen=True)
class Summary:
    """Where a batch stands: studies by state, failures by reason, and the drafts' labels
    (for each observation, how many drafts call it positive, uncertain, negative)."""

    counts: dict[str, int]
    failures: dict[str, int]
    labels: dict[str, dict[str, int]]
    seconds: dict[str, float]


LABEL_NAMES = {1: "positive", -1: "uncertain", 0: "negative"}


def summarize(items: Sequence[BatchItem]) -> Summary:
    counts = Counter(item.state for item in items)
    failures = Counter((item.detail or "unknown")[:300] for item in items if item.state == FAILED)
    labels: dict[str, Counter[str]] = {}
    seconds: Counter[str] = Counter()
    for item in items:
        for name, value in (item.labels or {}).items():
            if value in LABEL_NAMES:
                labels.setdefault(name, Counter())[LABEL_NAMES[value]] += 1
        seconds.update({k: float(v) for k, v in (item.timings or {}).items()})
    return Summary(
        counts={state: counts[state] for state in (QUEUED, RUNNING, DONE, FAILED, CANCELLED)},
        failures=dict(failures.most_common()),
        labels={name: dict(counter) for name, counter in sorted(labels.items())},
        seconds=dict(seconds),
    )


def batch_items(session: Session, batch_id: str) -> list[BatchItem]:
    query = select(BatchItem).where(BatchItem.batch_id == batch_id).order_by(BatchItem.number)
    return list(session.scalars(query))


def item_row(item: BatchItem) -> dict[str, Any]:
    """One study of the results (CSV and JSONL): its outcome, its draft and its labels."""
    return {
        "entry": item.entry,
        "study_uid": item.study_uid or "",
        "state": item.state,
        "detail": item.detail or "",
        "seconds": round(item.seconds, 3) if item.seconds is not None else None,
        "findings": item.findings or "",
        "impression": item.impression or "",
        "labels": item.labels or {},
    }
