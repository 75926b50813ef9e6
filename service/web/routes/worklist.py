"""The worklist page and the upload form: what to read, most urgent first; studies coming in."""

from __future__ import annotations

from typing import Annotated, get_args

from fastapi import APIRouter, Depends, Form, Query, Request, Response, UploadFile, status
from fastapi.responses import RedirectResponse

from service.api.deps import DispatcherDep, ProfileDep, SessionDep, SettingsDep, audit
from service.api.routes.studies import store_and_draft
from service.api.routes.worklist import (
    StateFilter,
    critical_findings,
    reading_state,
    rows_in_order,
)
from service.models import ADMIN, RADIOLOGIST, UPLOADER
from service.schemas import Priority
from service.web.pages import page
from service.web.session import COOKIE_PATH, CsrfChecked, Viewer, page_for

router = APIRouter(include_in_schema=False)

Reader = Annotated[Viewer, Depends(page_for(RADIOLOGIST, ADMIN))]
Uploader = Annotated[Viewer, Depends(page_for(UPLOADER, RADIOLOGIST, ADMIN))]
STATE_NAMES = {
    "to_read": "To read",
    "drafting": "Drafting",
    "draft_ready": "Draft ready",
    "signed": "Signed",
    "failed": "Failed",
    "all": "All",
}


@router.get("/worklist")
def worklist(
    request: Request,
    viewer: Reader,
    session: SessionDep,
    state: StateFilter = "to_read",
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> Response:
    """Studies in one state (to read by default): STAT, then suspected critical, then oldest;
    the first ``limit`` of them, as a page that must open fast on a busy day."""
    ordered = rows_in_order(session, state)
    rows = [
        {
            "study": study,
            "job": job,
            "reading": reading_state(job, report),
            "critical": critical_findings(report),
            "unreliable": bool(report and report.trust and report.trust["out_of_distribution"]),
        }
        for study, job, report in ordered[:limit]
    ]
    audit(session, viewer, "web.worklist", "study", None)
    return page(
        request,
        "worklist.html",
        viewer,
        title="Worklist",
        rows=rows,
        total=len(ordered),
        state=state,
        states=STATE_NAMES,
        reading_names=STATE_NAMES,
    )


@router.get("/upload")
def upload_form(request: Request, viewer: Uploader, session: SessionDep) -> Response:
    audit(session, viewer, "web.upload", "study", None)
    return page(
        request, "upload.html", viewer, title="Upload a study", priorities=get_args(Priority)
    )


@router.post("/upload")
async def upload(
    request: Request,
    viewer: Uploader,
    _: CsrfChecked,
    settings: SettingsDep,
    profile: ProfileDep,
    dispatcher: DispatcherDep,
    file: UploadFile,
    priority: Annotated[Priority, Form()] = "routine",
) -> Response:
    """Store the study and start its draft, then open it (uploaders see the upload form again)."""
    slots = request.app.state.ingest_slots
    uploaded = await store_and_draft(
        slots, await file.read(), priority, viewer, settings, profile, dispatcher
    )
    if viewer.role == UPLOADER:
        return page(
            request,
            "upload.html",
            viewer,
            title="Upload a study",
            priorities=get_args(Priority),
            uploaded=uploaded,
        )
    return RedirectResponse(f"{COOKIE_PATH}/studies/{uploaded.id}", status.HTTP_303_SEE_OTHER)
