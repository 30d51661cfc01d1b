"""HTTP for the delivery log of an import's notices."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from roster_api.deps import ReadDep, SessionDep
from roster_api.errors import NotFound, responses
from roster_api.notices import store
from roster_api.notices.schemas import NoticeAttemptPublic
from roster_api.pagination import Page, PageDep
from roster_shared.errors import ErrorCode

router = APIRouter(tags=["imports"])


@router.get("/v1/imports/{import_id}/notices", responses=responses(404))
def list_notices(
    import_id: Annotated[str, Path(max_length=64)], session: SessionDep, principal: ReadDep, page: PageDep
) -> Page[NoticeAttemptPublic]:
    """Every attempt to deliver the import's notices (email and webhook), oldest first: the channel,
    the target (an email domain or the webhook's host), the outcome and the server's reply code."""
    district_id = store.import_district(session=session, import_id=import_id)
    if district_id is None or not principal.sees(district_id):
        raise NotFound(f"Import {import_id!r} was not found.", code=ErrorCode.IMPORT_NOT_FOUND)
    rows, total = store.list_attempts(
        session=session, district_id=district_id, reference=import_id, limit=page.limit, offset=page.offset
    )
    items = [NoticeAttemptPublic.model_validate(row, from_attributes=True) for row in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)
