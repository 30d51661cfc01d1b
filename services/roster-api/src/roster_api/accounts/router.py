"""`POST /v1/resolve` (the gateway, on every Clever login) and the login diagnostics support reads."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from roster_api.accounts import service
from roster_api.accounts.pg import DatabaseUnavailable, PgResolver
from roster_api.accounts.rules import FAILURE_MESSAGES, email_digest, normalize_reference
from roster_api.accounts.schemas import AttemptOutcome, LoginAttemptDetail, LoginAttemptPublic
from roster_api.auth import KeyCache, Principal, Scope, authenticate, hash_key
from roster_api.deps import ReadDep, ReadDistrictDep, Require, SessionDep, SettingsDep
from roster_api.errors import Forbidden, Invalid, NotFound, RosterError, Unauthenticated, responses
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


class AsyncRequire(Require):
    """The same check as `Require`, but a cached key costs no thread hop: resolve is the hot path. When
    the cached verdict expires, the concurrent calls of that key wait for one check instead of each
    running its own (a burst of database writes every CACHE_SECONDS under load)."""

    def __init__(self, scope: Scope) -> None:
        super().__init__(scope)
        self._checking: dict[str, asyncio.Future[Principal | None]] = {}

    async def _authenticate(self, request: Request, raw: str, key_hash: str) -> Principal | None:
        pending = self._checking.get(key_hash)
        if pending is not None:
            await asyncio.wait([pending])
            if not pending.cancelled():
                return pending.result()
            # the request that was checking went away before the answer: check here instead
        future: asyncio.Future[Principal | None] = asyncio.get_running_loop().create_future()
        self._checking[key_hash] = future
        try:
            principal = await run_in_threadpool(
                authenticate, engine=request.app.state.engine, cache=request.app.state.key_cache, raw_key=raw
            )
        except sa.exc.OperationalError as exc:
            error = DatabaseUnavailable("The roster database is unavailable; try again.")
            future.set_exception(error)
            future.exception()  # retrieved: waiters, if any, re-raise it
            raise error from exc
        except BaseException:
            future.cancel()
            raise
        else:
            future.set_result(principal)
            return principal
        finally:
            del self._checking[key_hash]

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        header = request.headers.get("authorization", "")
        scheme, _, raw = header.partition(" ")
        raw = raw.strip()
        if scheme.lower() != "bearer" or not raw:
            raise Unauthenticated("Send an API key as `Authorization: Bearer <key>`.")
        cache: KeyCache = request.app.state.key_cache
        key_hash = hash_key(raw)
        hit, principal = cache.get(key_hash)
        if not hit:
            principal = await self._authenticate(request, raw, key_hash)
        if principal is None:
            raise Unauthenticated("The API key is not valid or was revoked.")
        if not principal.has(self.scope):
            raise Forbidden(f"This API key lacks the {self.scope.value!r} scope.")
        request.state.principal = principal
        return principal


ResolveKeyDep = Annotated[Principal, Depends(AsyncRequire(Scope.RESOLVE))]


class RateLimiter:
    """Token bucket per API key, per process (security.md L7). Runs on the event loop: no lock needed."""

    def __init__(self, rate_per_second: float, burst: int) -> None:
        self.rate = rate_per_second
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str) -> bool:
        if self.rate <= 0:
            return True
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        return True


_RESOLVE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **responses(429, 503),
    422: {
        "model": ErrorEnvelope,
        "description": "A malformed request (VALIDATION_ERROR), or no account for this login: the code is "
        "the upper-cased reason (NO_ACCOUNT, INACTIVE_ACCOUNT, PRODUCT_NOT_LICENSED, DISTRICT_NOT_LINKED, "
        'AMBIGUOUS_EMAIL, ROLE_MISMATCH, CLEVER_ID_CONFLICT) and the single detail is {"reason", '
        '"reference", "message"}.',
    },
}


@router.post("/v1/resolve", response_model=ResolveResult, responses=_RESOLVE_RESPONSES)
async def resolve(body: ResolveRequest, request: Request, principal: ResolveKeyDep) -> Response:
    """Find the product account for a Clever login (DESIGN.md rules 1-4). Every call is recorded as a
    login attempt whose `reference` the gateway shows the user and support looks up."""
    limiter: RateLimiter = request.app.state.resolve_limiter
    if not limiter.allow(principal.key_id):
        raise RateLimited("Too many resolve calls for this API key; retry shortly.")
    settings = request.app.state.settings
    caller = service.Caller(name=principal.name, district_id=principal.district_id)
    pepper = settings.hash_pepper.get_secret_value()
    resolver: PgResolver | None = request.app.state.resolver
    if resolver is not None:
        outcome = await resolver.resolve(request=body, caller=caller, pepper=pepper)
    else:
        try:
            outcome = await run_in_threadpool(
                service.resolve, engine=request.app.state.engine, request=body, caller=caller, pepper=pepper
            )
        except sa.exc.OperationalError as exc:
            raise DatabaseUnavailable("The roster database is unavailable; try again.") from exc
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


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@router.get("/v1/districts/{district_id}/login-attempts", responses=responses(404))
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


@router.get("/v1/login-attempts/{reference}", responses=responses(404))
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
