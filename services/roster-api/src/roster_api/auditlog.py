"""`GET /v1/audit`: the log of administrative actions (who, what, when). Writers use `roster_api.audit`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlmodel import col, func, select

from roster_api.deps import AdminDep, SessionDep
from roster_api.errors import district_not_found, responses
from roster_api.models import AuditEvent
from roster_api.pagination import IsoDateTime, Page, PageDep

router = APIRouter(tags=["audit"])


class AuditEventPublic(BaseModel):
    id: int
    created_at: datetime
    actor: str
    action: str
    district_id: str | None
    target: str | None
    details: dict[str, Any]


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@router.get("/v1/audit", responses=responses(404))
def list_audit_events(
    session: SessionDep,
    principal: AdminDep,
    page: PageDep,
    district_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    action: Annotated[
        str | None,
        Query(min_length=1, max_length=64, description="e.g. district.update, person.clever_id_bound"),
    ] = None,
    actor: Annotated[str | None, Query(min_length=1, max_length=100, description="API key name")] = None,
    since: Annotated[IsoDateTime | None, Query(description="ISO 8601; without an offset, UTC")] = None,
    until: Annotated[
        IsoDateTime | None, Query(description="ISO 8601, exclusive; without an offset, UTC")
    ] = None,
) -> Page[AuditEventPublic]:
    """Newest first. A key bound to one district sees that district's events only. `district_id` also
    matches events about a district that no longer has rows of its own (its purge)."""
    conditions: list[Any] = []
    scope = principal.district_id
    if district_id is not None and scope is not None and district_id != scope:
        raise district_not_found(district_id)
    wanted = district_id or scope
    if wanted is not None:
        conditions.append(
            sa.or_(
                col(AuditEvent.district_id) == wanted,
                sa.and_(col(AuditEvent.district_id).is_(None), col(AuditEvent.target) == wanted),
            )
        )
    if action is not None:
        conditions.append(AuditEvent.action == action)
    if actor is not None:
        conditions.append(AuditEvent.actor == actor)
    if since is not None:
        conditions.append(col(AuditEvent.created_at) >= _utc(since))
    if until is not None:
        conditions.append(col(AuditEvent.created_at) < _utc(until))
    total = session.exec(select(func.count()).select_from(AuditEvent).where(*conditions)).one()
    rows = session.exec(
        select(AuditEvent)
        .where(*conditions)
        .order_by(col(AuditEvent.created_at).desc(), col(AuditEvent.id).desc())
        .limit(page.limit)
        .offset(page.offset)
    ).all()
    items = [AuditEventPublic.model_validate(r, from_attributes=True) for r in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)
