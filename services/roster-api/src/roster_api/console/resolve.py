"""`POST /v1/console/resolve` (scope `resolve`): the sso-gateway asks whether a Clever user may use the
district console, and as whom. A `district_admin` of a Clever district linked to one of our districts
may (and `staff` where the district allows it); students, teachers and unlinked districts are refused
with the usual reasons and a reference, recorded as login attempts of the product "console"."""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends
from sqlmodel import select
from starlette.concurrency import run_in_threadpool

from roster_api import audit
from roster_api.accounts.router import ResolveFailed
from roster_api.accounts.service import record_attempt
from roster_api.auth import Principal, Scope
from roster_api.db import session_scope
from roster_api.deps import REQUIRE, EngineDep
from roster_api.errors import responses
from roster_api.models import District
from roster_shared.contracts import CleverRole, ConsoleIdentity, ConsoleResolveRequest, ResolveReason

router = APIRouter(tags=["district console"])
PRODUCT = "console"


def _admitted(district: District, role: CleverRole) -> bool:
    return role is CleverRole.DISTRICT_ADMIN or (role is CleverRole.STAFF and district.console_staff)


def decide(engine: sa.Engine, body: ConsoleResolveRequest, caller: str) -> ConsoleIdentity:
    with session_scope(engine) as session:
        district = session.exec(
            select(District).where(District.clever_district_id == body.clever_district_id)
        ).first()
        reason: ResolveReason | None = None
        if district is None:
            reason, why = ResolveReason.DISTRICT_NOT_LINKED, "No district is linked to this Clever district."
        elif not _admitted(district, body.clever_role):
            allowed = "district admins and staff" if district.console_staff else "district admins"
            why = f"The district console is for {allowed}; this Clever user is {body.clever_role.value}."
            reason = ResolveReason.ROLE_MISMATCH
        else:
            why = f"A {body.clever_role.value} of a linked district: signed in to the district console."
        reference = record_attempt(
            session=session,
            attempt={
                "product": PRODUCT,
                "district_id": district.id if district else None,
                "clever_district_id": body.clever_district_id,
                "clever_user_id": body.clever_user_id,
                "clever_role": body.clever_role.value,
                "outcome": "failure" if reason else "success",
                "reason": reason.value if reason else None,
                "caller": caller[:100],
                "rule": "district" if district is None else "role",
                "diagnosis": why,
            },
        )
        if reason is not None or district is None:
            session.commit()
            raise ResolveFailed(reason or ResolveReason.DISTRICT_NOT_LINKED, reference)
        actor = f"clever:{body.clever_user_id}"
        audit.record(
            session=session,
            actor=actor,
            action="console.sign_in",
            district_id=district.id,
            target=reference,
            details={"kind": "clever", "role": body.clever_role.value},
        )
        return ConsoleIdentity(
            district_id=district.id,
            district_name=district.name,
            actor=actor,
            clever_user_id=body.clever_user_id,
            clever_role=body.clever_role,
            reference=reference,
        )


@router.post("/v1/console/resolve", responses=responses(422))
async def resolve_console(
    body: ConsoleResolveRequest,
    engine: EngineDep,
    principal: Annotated[Principal, Depends(REQUIRE[Scope.RESOLVE])],
) -> ConsoleIdentity:
    """For the sso-gateway's console client: the console identity of a Clever user, or 422 with the reason
    (`DISTRICT_NOT_LINKED`, `ROLE_MISMATCH`) and a reference support can look up."""
    return await run_in_threadpool(decide, engine, body, principal.name)
