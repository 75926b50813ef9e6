"""The audits pages: start an audit (drafts signed over a period, or an uploaded CSV), follow it
on the ``evaluate`` queue, read its figures and worst studies, download its page."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request, Response, UploadFile, status
from fastapi.responses import RedirectResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from clinical_eval.errors import ClinicalEvalError
from clinical_eval.scoring import METRIC_GROUPS, chosen_groups
from service.api.deps import DispatcherDep, SessionDep, SettingsDep, audit
from service.models import AuditRun
from service.web.audit_runs import (
    CSV,
    DEFAULT_METRICS,
    SIGNED,
    AuditRequestError,
    run_state,
    signed_over,
    start_audit,
)
from service.web.pages import page
from service.web.session import COOKIE_PATH, CsrfChecked, QualityTeamPage, Viewer
from workers.audits import audit_folder
from workers.config import Settings
from workers.db import session_scope

router = APIRouter(prefix="/audits", include_in_schema=False)

REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'"
"""The audit page is clinical_eval's own HTML (inline styles, plots as data: PNGs, no script)."""


@router.get("")
def audits(
    request: Request, viewer: QualityTeamPage, session: SessionDep, settings: SettingsDep
) -> Response:
    """Every audit, newest first, with its progress; and the form to start one."""
    runs = list(session.scalars(select(AuditRun).order_by(AuditRun.created_at.desc()).limit(100)))
    audit(session, viewer, "web.audits", "audit", None)
    return _list_page(request, viewer, settings, runs)


def _list_page(
    request: Request,
    viewer: Viewer,
    settings: Settings,
    runs: list[AuditRun],
    *,
    error: str = "",
    status_code: int = status.HTTP_200_OK,
) -> Response:
    today = date.today()
    return page(
        request,
        "audits.html",
        viewer,
        title="Audits",
        status_code=status_code,
        runs=[(run, run_state(audit_folder(settings, run.id))) for run in runs],
        metric_groups=METRIC_GROUPS,
        default_metrics=DEFAULT_METRICS,
        first=today - timedelta(days=30),
        last=today,
        error=error,
    )


@router.post("")
def start(
    request: Request,
    viewer: QualityTeamPage,
    _: CsrfChecked,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
    source: Annotated[str, Form(pattern=f"^({SIGNED}|{CSV})$")],
    metrics: Annotated[list[str], Form()],
    first: Annotated[date | None, Form()] = None,
    last: Annotated[date | None, Form()] = None,
    file: UploadFile | None = None,
) -> Response:
    """Check the set, record the audit and queue it; a set that cannot be audited is explained
    on the form, with nothing kept. The run is committed before the browser is sent to it."""
    try:
        with session_scope(settings.sqlalchemy_url) as session:
            chosen_groups(metrics)  # a typo is refused before any reading
            data, title = _audit_input(session, source, first, last, file)
            run = start_audit(
                session,
                settings,
                dispatcher,
                viewer,
                source=source,
                title=title,
                data=data,
                metrics=metrics,
            )
            audit(session, viewer, "audit.start", "audit", run.id, status.HTTP_201_CREATED)
    except (AuditRequestError, ClinicalEvalError) as error:
        with session_scope(settings.sqlalchemy_url) as session:
            runs = list(session.scalars(select(AuditRun).order_by(AuditRun.created_at.desc())))
            code = status.HTTP_422_UNPROCESSABLE_CONTENT
            return _list_page(request, viewer, settings, runs, error=str(error), status_code=code)
    return RedirectResponse(f"{COOKIE_PATH}/audits/{run.id}", status.HTTP_303_SEE_OTHER)


def _audit_input(
    session: Session, source: str, first: date | None, last: date | None, file: UploadFile | None
) -> tuple[bytes, str]:
    """The CSV to audit and the audit's title."""
    if source == SIGNED:
        if first is None or last is None:
            raise AuditRequestError("give the first and last day of the period")
        return signed_over(session, first, last), f"Signed from {first} to {last}"
    if file is None or not file.filename:
        raise AuditRequestError("choose a CSV file to audit")
    return file.file.read(), f"Uploaded {file.filename}"


@router.get("/{run_id}")
def audit_page(
    request: Request,
    run_id: str,
    viewer: QualityTeamPage,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """One audit: its progress, then its headline figures, worst studies and full page."""
    run = _find(session, run_id)
    audit(session, viewer, "web.audit", "audit", run.id)
    folder = audit_folder(settings, run.id)
    numbers: dict[str, Any] = {}
    if (folder / "audit.json").exists():
        numbers = json.loads((folder / "audit.json").read_text(encoding="utf-8"))
    title = f"Audit: {run.title}"
    state = run_state(folder)
    return page(request, "audit.html", viewer, title=title, run=run, state=state, numbers=numbers)


@router.get("/{run_id}/state")
def audit_state(
    run_id: str, viewer: QualityTeamPage, session: SessionDep, settings: SettingsDep
) -> Any:
    """Progress for the page that waits (not a view: no audit event)."""
    state = run_state(audit_folder(settings, _find(session, run_id).id))
    return {"state": state.state, "percent": state.percent, "stage": state.stage}


@router.get("/{run_id}/report.html")
def report(
    run_id: str,
    viewer: QualityTeamPage,
    session: SessionDep,
    settings: SettingsDep,
    download: bool = False,
) -> Response:
    """The audit's own HTML page, framed in the workspace or downloaded."""
    run = _find(session, run_id)
    path = audit_folder(settings, run.id) / "audit.html"
    if not path.exists():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "This audit has no page yet.")
    audit(session, viewer, "audit.download" if download else "audit.read", "audit", run.id)
    headers = {"Content-Security-Policy": REPORT_CSP}
    if download:
        headers["Content-Disposition"] = f'attachment; filename="audit-{run.id}.html"'
    return Response(path.read_bytes(), media_type="text/html", headers=headers)


def _find(session: Session, run_id: str) -> AuditRun:
    run = session.get(AuditRun, run_id)
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No audit with id {run_id!r}.")
    return run
