"""The admin page: the users and the latest entries of the audit trail. Admins only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import select

from service.api.deps import SessionDep, audit
from service.models import ADMIN, AuditEvent, User
from service.web.pages import page
from service.web.session import Viewer, page_for

router = APIRouter(include_in_schema=False)

Admin = Annotated[Viewer, Depends(page_for(ADMIN))]


@router.get("/admin")
def admin(
    request: Request,
    viewer: Admin,
    session: SessionDep,
    events: Annotated[int, Query(ge=10, le=1000)] = 100,
) -> Response:
    """Who can use the service, and who did what lately (newest first)."""
    users = list(session.scalars(select(User).order_by(User.created_at)))
    trail = list(session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(events)))
    audit(session, viewer, "web.admin", "user", None)
    return page(request, "admin.html", viewer, title="Admin", users=users, trail=trail)
