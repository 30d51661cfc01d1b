"""`POST /v1/resolve` (the gateway, on every Clever login) and the login diagnostics support reads."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from roster_api.accounts import flow, service
from roster_api.accounts.flow import Caller
from roster_api.accounts.rules import FAILURE_MESSAGES, email_digest, normalize_reference
from roster_api.accounts.runtime import ResolveRuntimeDep, flush_attempts
from roster_api.accounts.schemas import AttemptOutcome, LoginAttemptDetail, LoginAttemptPublic
from roster_api.auth import Principal, Scope
from roster_api.deps import REQUIRE, ReadDep, ReadDistrictDep, SessionDep, SettingsDep
from roster_api.errors import Invalid, NotFound, RosterError, responses
from roster_api.lean_route import LeanRoute
from roster_api.pagination import Page, PageDep
from roster_shared.contracts import ResolveReason, ResolveRequest, ResolveResult
from roster_shared.errors import ErrorCode, ErrorEnvelope

_log = logging.getLogger("roster_api.resolve")

router = APIRouter(tags=["resolve and login diagnostics"])


class ResolveFailed(RosterError):
    """422 with the reason as the code and `{"reason", "reference", "message"}` as the single detail,
    which is what `roster_shared.client.RosterApiClient.resolve` parses."""

    status_code = 422

    def __init__(self, reason: ResolveReason, reference: str) -> None:
        message = FAILURE_MESSAGES[reason]
        super().__init__(
            message,
            code=ErrorCode(reason.value.upper()),
            details=[{"reason": reason.value, "reference": reference, "message": message}],
        )


class RateLimited(RosterError):
    status_code = 429
    code = ErrorCode.RATE_LIMITED


ResolveKeyDep = Annotated[Principal, Depends(REQUIRE[Scope.RESOLVE])]


_RESOLVE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **responses(429, 503),
    422: {
        "model": ErrorEnvelope,
        "description": "A malformed request (VALIDATION_ERROR), or no account for this login: the code is "
        "the upper-cased reason (NO_ACCOUNT, INACTIVE_ACCOUNT, PRODUCT_NOT_LICENSED, DISTRICT_NOT_LINKED, "
        "AMBIGUOUS_EMAIL, AMBIGUOUS_SIS_ID, ROLE_MISMATCH, CLEVER_ID_CONFLICT) and the single detail is "
        '{"reason", "reference", "message"}.',
    },
}


async def resolve(body: ResolveRequest, principal: ResolveKeyDep, runtime: ResolveRuntimeDep) -> Response:
    """Find the product account for a Clever login (rules 1-4 of docs/design.md). Every call is recorded
    as a login attempt whose `reference` the gateway shows the user and support looks up."""
    if not runtime.limiter.allow(principal.key_id):
        raise RateLimited("Too many resolve calls for this API key; retry shortly.")
    caller = Caller(name=principal.name, district_id=principal.district_id)
    outcome = await flow.resolve(store=runtime.store, request=body, caller=caller, pepper=runtime.pepper)
    if outcome.result is None:
        reason = outcome.decision.reason
        assert reason is not None
        _log.info(
            "resolve failed",
            extra={
                "fields": {
                    "reference": outcome.reference,
                    "reason": reason.value,
                    "district_id": outcome.district_id,
                    "product": body.product.value,
                }
            },
        )
        raise ResolveFailed(reason, outcome.reference)
    return Response(content=outcome.result.model_dump_json(), media_type="application/json")


# LeanRoute: a valid call skips FastAPI's dependency solving, a fifth of the CPU of a resolve; the app
# serves it from its LeanLane too (main.create_app)
router.add_api_route(
    "/v1/resolve",
    resolve,
    methods=["POST"],
    response_model=ResolveResult,
    responses=_RESOLVE_RESPONSES,
    route_class_override=LeanRoute,
)
LEAN_ROUTES = [route for route in router.routes if isinstance(route, LeanRoute)]


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@router.get(
    "/v1/districts/{district_id}/login-attempts",
    responses=responses(404),
    dependencies=[Depends(flush_attempts)],
)
def list_login_attempts(
    district: ReadDistrictDep,
    session: SessionDep,
    settings: SettingsDep,
    page: PageDep,
    outcome: AttemptOutcome | None = None,
    reason: ResolveReason | None = None,
    since: Annotated[datetime | None, Query(description="ISO 8601; without an offset, UTC")] = None,
    until: Annotated[
        datetime | None, Query(description="ISO 8601, exclusive; without an offset, UTC")
    ] = None,
    clever_user_id: Annotated[str | None, Query(pattern=r"^[0-9a-fA-F]{24}$")] = None,
    email: Annotated[
        str | None, Query(max_length=320, description="Matched by keyed hash; the email is not stored")
    ] = None,
) -> Page[LoginAttemptPublic]:
    """The district's resolve attempts, newest first: "why can't this student log in"."""
    digest = None
    if email is not None:
        normalized = email.strip().lower()
        if not normalized:
            raise Invalid("`email` must not be empty.", field="email")
        digest = email_digest(normalized, settings.hash_pepper.get_secret_value())
    rows, total = service.list_attempts(
        session=session,
        district_id=district.id,
        outcome=outcome.value if outcome else None,
        reason=reason.value if reason else None,
        since=_utc(since),
        until=_utc(until),
        clever_user_id=clever_user_id.lower() if clever_user_id else None,
        digest=digest,
        limit=page.limit,
        offset=page.offset,
    )
    return Page(
        items=[LoginAttemptPublic.of(r) for r in rows], total=total, limit=page.limit, offset=page.offset
    )


@router.get(
    "/v1/login-attempts/{reference}", responses=responses(404), dependencies=[Depends(flush_attempts)]
)
def get_login_attempt(
    reference: Annotated[
        str, Path(max_length=32, description="e.g. LA-7KQ2M-9XPDH; case and dashes optional")
    ],
    session: SessionDep,
    principal: ReadDep,
) -> LoginAttemptDetail:
    """One attempt by the reference the user saw, with what the roster holds for that Clever ID today."""
    attempt = service.get_attempt(session=session, reference=normalize_reference(reference))
    # a district-bound key sees its district's attempts only; unlinked-district attempts need an unbound key
    if attempt is None or (
        principal.district_id is not None and attempt.district_id != principal.district_id
    ):
        raise NotFound(
            f"No login attempt has the reference {reference.strip()[:32]!r}.",
            code=ErrorCode.LOGIN_ATTEMPT_NOT_FOUND,
        )
    public = LoginAttemptPublic.of(attempt)
    return LoginAttemptDetail(
        **public.model_dump(), roster_now=service.roster_now(session=session, attempt=attempt)
    )
