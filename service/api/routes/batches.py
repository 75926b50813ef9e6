"""Batches: whole archives drafted through the service (``workers.batches``): submit a server
folder, an uploaded ZIP/TAR or a PACS query; follow, cancel, resume; fetch the results.

Archives are the quality team's work: the auditor and admin roles submit and read them. The
drafts of a batch hold the studies' text, so the roles that see no reports (uploader) do not
see them; radiologists read their worklist, not archives.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, HTTPException, Query, UploadFile, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask

from service.api.deps import (
    MAX_OFFSET,
    Caller,
    DispatcherDep,
    SessionDep,
    SettingsDep,
    allow,
    audit,
    error_responses,
)
from service.dispatch import Dispatcher, hand_over_chunks
from service.models import ADMIN, AUDITOR
from service.schemas import BatchDetail, BatchItemPublic, BatchPublic
from workers import batches
from workers.config import Settings
from workers.db import session_scope
from workers.records import FOLDER, PACS_QUERY, UPLOAD, Batch, BatchItem, new_id

router = APIRouter(prefix="/batches", tags=["batches"])

QualityTeam = Annotated[Caller, Depends(allow(AUDITOR, ADMIN))]
DATE = r"^\d{8}$"


@dataclass(frozen=True)
class BatchRequest:
    """What a batch is made of: exactly one of a server folder, an uploaded archive's bytes,
    or a PACS query (study dates ``since``-``until``, YYYYMMDD, and a modality)."""

    folder: str | None = None
    upload: bytes | None = None
    upload_name: str = ""
    since: str | None = None
    until: str | None = None
    modality: str = ""


@router.post(
    "",
    response_model=BatchPublic,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(413, 422, 502),
)
async def submit(
    caller: QualityTeam,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
    folder: Annotated[
        str | None, Form(description="A server folder under ECHOCXR_BATCH_ROOTS.")
    ] = None,
    file: Annotated[
        UploadFile | None, Form(description="A ZIP or TAR of one study per entry.")
    ] = None,
    pacs_since: Annotated[str | None, Form(pattern=DATE, description="YYYYMMDD")] = None,
    pacs_until: Annotated[str | None, Form(pattern=DATE, description="YYYYMMDD")] = None,
    modality: Annotated[str, Form(max_length=16)] = "",
) -> BatchPublic:
    """Draft every study of an archive, in chunks shared by every worker.

    The upload's size is limited while it streams (``ECHOCXR_MAX_UPLOAD_MB``) and the archive
    is checked (member count, sizes before inflating, escaping paths, links) before anything is
    written.
    """
    request = BatchRequest(
        folder=folder or None,
        upload=await file.read() if file is not None else None,
        upload_name=(file.filename or "upload") if file is not None else "",
        since=pacs_since,
        until=pacs_until or pacs_since,
        modality=modality.upper(),
    )
    batch = await run_in_threadpool(create_batch, settings, dispatcher, caller, request)
    return batch


def create_batch(
    settings: Settings, dispatcher: Dispatcher, caller: Caller, request: BatchRequest
) -> BatchPublic:
    """Record the batch and hand its chunks over; the API and the workspace both submit this
    way. Raises ``HTTPException`` (422 for a source that cannot be a batch, 502 for a PACS that
    fails) with nothing recorded."""
    from dicom import DicomWebError
    from workers.pacs import PacsNotConfiguredError

    batch_id = new_id()
    try:
        kind, source, folder, entries = _entries(settings, batch_id, request)
    except (batches.BatchSourceError, PacsNotConfiguredError) as error:
        shutil.rmtree(settings.batches_dir / batch_id, ignore_errors=True)
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    except DicomWebError as error:
        raise HTTPException(
            status.HTTP_502_BAD_GATEWAY, f"The PACS query failed: {error}"
        ) from None
    with session_scope(settings.sqlalchemy_url) as session:
        batch = batches.record_batch(
            session,
            settings,
            kind=kind,
            source=source,
            folder=folder,
            entries=entries,
            user=(caller.user_id, caller.name),
            batch_id=batch_id,
        )
        audit(session, caller, "batch.create", "batch", batch.id, 201)
        chunks = batches.chunks_of(session, batch.id)
        public = batch_public(session, batch)
    hand_over_chunks(dispatcher, settings, batch_id, chunks)
    return public


def _entries(
    settings: Settings, batch_id: str, request: BatchRequest
) -> tuple[str, str, str, list[str]]:
    """(kind, source in words, folder read, entries) of the one source the request names."""
    given = [request.folder is not None, request.upload is not None, request.since is not None]
    if sum(given) != 1:
        raise batches.BatchSourceError(
            "give exactly one source: a server folder, an uploaded archive, or a PACS query "
            "(pacs_since, with pacs_until and modality if wanted)"
        )
    if request.folder is not None:
        path, entries = batches.folder_entries(settings, request.folder)
        return FOLDER, str(path), str(path), entries
    if request.upload is not None:
        path, entries = batches.unpack_upload(settings, batch_id, request.upload)
        return UPLOAD, request.upload_name, str(path), entries
    assert request.since is not None and request.until is not None
    entries = batches.pacs_entries(settings, request.since, request.until, request.modality)
    query = f"studies {request.since}-{request.until} {request.modality or 'any modality'}"
    return PACS_QUERY, query, "", entries


@router.get("", response_model=list[BatchPublic])
def list_batches(
    caller: QualityTeam,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[BatchPublic]:
    """Batches, newest first, with their studies counted by state."""
    query = select(Batch).order_by(Batch.created_at.desc()).limit(limit).offset(offset)
    found = list(session.scalars(query))
    audit(session, caller, "batch.list", "batch", None)
    return [batch_public(session, batch) for batch in found]


@router.get("/{batch_id}", response_model=BatchDetail, responses=error_responses(404))
def get_batch(
    batch_id: str,
    caller: QualityTeam,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> BatchDetail:
    """Progress, failures by reason, the drafts' label distribution and a page of studies."""
    batch = find_batch(session, batch_id)
    audit(session, caller, "batch.read", "batch", batch.id)
    return batch_detail(session, batch, limit, offset)


def batch_detail(session: Session, batch: Batch, limit: int, offset: int) -> BatchDetail:
    items = batches.batch_items(session, batch.id)
    summary = batches.summarize(items)
    return BatchDetail(
        **BatchPublic.model_validate(batch).model_dump(exclude={"counts"}),
        counts=summary.counts,
        failures=summary.failures,
        labels=summary.labels,
        seconds=summary.seconds,
        items=[BatchItemPublic.model_validate(i) for i in items[offset : offset + limit]],
    )


@router.post("/{batch_id}/cancel", response_model=BatchPublic, responses=error_responses(404, 409))
def cancel(batch_id: str, caller: QualityTeam, session: SessionDep) -> BatchPublic:
    """Stop a batch: studies not drafted yet are cancelled (a chunk being drafted finishes, its
    drafts not recorded); ``resume`` queues them again."""
    return cancel_batch(session, caller, batch_id)


def cancel_batch(session: Session, caller: Caller, batch_id: str) -> BatchPublic:
    """Cancel, recorded; the API and the workspace both cancel this way. Raises
    ``HTTPException`` (404, 409 for a batch that has ended)."""
    batch = find_batch(session, batch_id, lock=True)
    if not batches.cancel_batch(session, batch):
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"The batch is {batch.state}; only unfinished ones cancel."
        )
    audit(session, caller, "batch.cancel", "batch", batch.id)
    return batch_public(session, batch)


@router.post("/{batch_id}/resume", response_model=BatchPublic, responses=error_responses(404, 409))
def resume(
    batch_id: str,
    caller: QualityTeam,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
) -> BatchPublic:
    """Queue a cancelled batch's cancelled studies again."""
    return resume_batch(settings, dispatcher, caller, batch_id)


def resume_batch(
    settings: Settings, dispatcher: Dispatcher, caller: Caller, batch_id: str
) -> BatchPublic:
    """Queue the cancelled studies again, recorded, and hand their chunks over; the API and
    the workspace both resume this way. Raises ``HTTPException`` (404, 409 for a batch that
    was not cancelled)."""
    with session_scope(settings.sqlalchemy_url) as session:
        batch = find_batch(session, batch_id, lock=True)
        chunks = batches.resume_batch(session, batch)
        if not chunks:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"The batch is {batch.state}; only a cancelled batch resumes.",
            )
        audit(session, caller, "batch.resume", "batch", batch.id)
        public = batch_public(session, batch)
    hand_over_chunks(dispatcher, settings, batch_id, chunks)
    return public


ResultFormat = Literal["csv", "jsonl", "zip"]


@router.get(
    "/{batch_id}/results",
    responses={
        **error_responses(404),
        200: {"content": {"text/csv": {}, "application/x-ndjson": {}, "application/zip": {}}},
    },
)
def results(
    batch_id: str,
    caller: QualityTeam,
    session: SessionDep,
    settings: SettingsDep,
    format: ResultFormat = "csv",
) -> Response:
    """Every study's outcome and draft as CSV or JSON Lines, or every report file (JSON, SR,
    PDF, FHIR per study, with ``results.csv``) as a ZIP."""
    batch = find_batch(session, batch_id)
    rows = [batches.item_row(item) for item in batches.batch_items(session, batch.id)]
    audit(session, caller, f"batch.results.{format}", "batch", batch.id)
    name = f"batch-{batch.id}"
    if format == "jsonl":
        body = "".join(json.dumps(row) + "\n" for row in rows)
        return Response(body, media_type="application/x-ndjson", headers=_attachment(name, format))
    if format == "csv":
        return Response(results_csv(rows), media_type="text/csv", headers=_attachment(name, format))
    path = results_zip(batches.report_folder(settings, batch.id), results_csv(rows))
    return FileResponse(
        path,
        media_type="application/zip",
        filename=f"{name}.zip",
        background=BackgroundTask(path.unlink),
    )


def results_csv(rows: list[dict[str, object]]) -> str:
    text = io.StringIO()
    fields = [
        "entry",
        "study_uid",
        "state",
        "detail",
        "seconds",
        "findings",
        "impression",
        "labels",
    ]
    writer = csv.DictWriter(text, fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows({**row, "labels": json.dumps(row["labels"])} for row in rows)
    return text.getvalue()


def results_zip(reports: Path, table: str) -> Path:
    """A ZIP (in a temporary file, deleted once sent) of ``results.csv`` and every report file
    under ``reports``, stored as ``<entry>/<file>``."""
    with tempfile.NamedTemporaryFile(suffix=".zip", delete=False) as handle:
        path = Path(handle.name)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("results.csv", table)
        for file in _files_under(reports):
            archive.write(file, file.relative_to(reports).as_posix())
    return path


def _files_under(folder: Path) -> Iterator[Path]:
    if folder.is_dir():
        yield from sorted(
            p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
        )


def _attachment(name: str, extension: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}.{extension}"'}


def batch_public(session: Session, batch: Batch) -> BatchPublic:
    query = (
        select(BatchItem.state, func.count())
        .where(BatchItem.batch_id == batch.id)
        .group_by(BatchItem.state)
    )
    counts = {state: int(n) for state, n in session.execute(query)}
    return BatchPublic(
        **BatchPublic.model_validate(batch).model_dump(exclude={"counts"}), counts=counts
    )


def find_batch(session: Session, batch_id: str, *, lock: bool = False) -> Batch:
    batch = session.get(Batch, batch_id, with_for_update=lock)
    if batch is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No batch with id {batch_id!r}.")
    return batch
