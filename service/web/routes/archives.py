"""The archives pages: submit an archive (a server folder or an uploaded ZIP/TAR), follow its
progress, read its failures and its drafts' labels, download the results, cancel, resume. The
same functions as ``/v1/batches`` (``service.api.routes.batches``) do the work."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request, Response, UploadFile, status
from fastapi.responses import RedirectResponse
from sqlalchemy import select

from service.api.deps import DispatcherDep, SessionDep, SettingsDep, audit
from service.api.routes.batches import (
    BatchRequest,
    ResultFormat,
    batch_detail,
    batch_public,
    cancel_batch,
    create_batch,
    find_batch,
    results,
    resume_batch,
)
from service.web.pages import page
from service.web.session import COOKIE_PATH, CsrfChecked, QualityTeamPage, Viewer
from workers.db import session_scope
from workers.records import Batch

router = APIRouter(prefix="/archives", include_in_schema=False)

SHOWN_STUDIES = 500


@router.get("")
def archives(
    request: Request, viewer: QualityTeamPage, session: SessionDep, settings: SettingsDep
) -> Response:
    """Every batch, newest first, with its progress; and the form to submit one."""
    audit(session, viewer, "web.archives", "batch", None)
    return _list_page(request, viewer, session, bool(settings.batch_root_folders))


def _list_page(
    request: Request,
    viewer: Viewer,
    session: Any,
    folders_allowed: bool,
    *,
    error: str = "",
    status_code: int = status.HTTP_200_OK,
) -> Response:
    found = session.scalars(select(Batch).order_by(Batch.created_at.desc()).limit(100))
    return page(
        request,
        "archives.html",
        viewer,
        title="Archives",
        status_code=status_code,
        batches=[batch_public(session, batch) for batch in found],
        folders_allowed=folders_allowed,
        error=error,
    )


@router.post("")
def submit(
    request: Request,
    viewer: QualityTeamPage,
    _: CsrfChecked,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
    folder: Annotated[str, Form()] = "",
    file: UploadFile | None = None,
) -> Response:
    """Record the batch and queue its chunks, then show it; a source that cannot be a batch is
    explained on the form, with nothing kept."""
    upload = file.file.read() if file is not None and file.filename else None
    asked = BatchRequest(
        folder=folder.strip() or None,
        upload=upload,
        upload_name=file.filename or "" if file is not None else "",
    )
    try:
        created = create_batch(settings, dispatcher, viewer, asked)
    except HTTPException as error:
        with session_scope(settings.sqlalchemy_url) as session:
            return _list_page(
                request,
                viewer,
                session,
                bool(settings.batch_root_folders),
                error=str(error.detail),
                status_code=error.status_code,
            )
    return RedirectResponse(f"{COOKIE_PATH}/archives/{created.id}", status.HTTP_303_SEE_OTHER)


@router.get("/{batch_id}")
def archive_page(
    request: Request, batch_id: str, viewer: QualityTeamPage, session: SessionDep
) -> Response:
    """One batch: progress, failures by reason, the drafts' labels, its studies, downloads."""
    batch = find_batch(session, batch_id)
    audit(session, viewer, "web.archive", "batch", batch.id)
    detail = batch_detail(session, batch, SHOWN_STUDIES, 0)
    return page(
        request,
        "archive.html",
        viewer,
        title=f"Archive: {batch.source}",
        batch=detail,
        shown=SHOWN_STUDIES,
    )


@router.get("/{batch_id}/state")
def archive_state(batch_id: str, viewer: QualityTeamPage, session: SessionDep) -> Any:
    """Progress for the page that waits (not a view: no audit event)."""
    public = batch_public(session, find_batch(session, batch_id))
    ended = sum(public.counts.get(state, 0) for state in ("done", "failed", "cancelled"))
    return {"state": public.state, "percent": round(100 * ended / max(public.total, 1))}


@router.get("/{batch_id}/results")
def download(
    batch_id: str,
    viewer: QualityTeamPage,
    session: SessionDep,
    settings: SettingsDep,
    format: ResultFormat = "csv",
) -> Response:
    """The results as the API gives them (CSV, JSON Lines, or every report file as a ZIP)."""
    return results(batch_id, viewer, session, settings, format)


@router.post("/{batch_id}/cancel")
def cancel(batch_id: str, viewer: QualityTeamPage, _: CsrfChecked, session: SessionDep) -> Response:
    """Cancel the batch (one that has ended is left as it is) and show it again."""
    with _unless_ended():
        cancel_batch(session, viewer, batch_id)
    return RedirectResponse(f"{COOKIE_PATH}/archives/{batch_id}", status.HTTP_303_SEE_OTHER)


@router.post("/{batch_id}/resume")
def resume(
    batch_id: str,
    viewer: QualityTeamPage,
    _: CsrfChecked,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
) -> Response:
    """Queue the cancelled studies again and show the batch."""
    with _unless_ended():
        resume_batch(settings, dispatcher, viewer, batch_id)
    return RedirectResponse(f"{COOKIE_PATH}/archives/{batch_id}", status.HTTP_303_SEE_OTHER)


@contextlib.contextmanager
def _unless_ended() -> Iterator[None]:
    """A batch that cannot be cancelled or resumed now (409) is just shown again."""
    try:
        yield
    except HTTPException as error:
        if error.status_code != status.HTTP_409_CONFLICT:
            raise
