"""Server-side sessions (one per browser: a new login replaces the old one) and one-time codes."""

from __future__ import annotations

import logging

from fastapi import Request
from starlette.responses import Response

from roster_shared.client import RosterApiError, RosterApiUnavailable
from roster_shared.contracts import ConsoleResolveRequest, Product, ResolveFailure, ResolveRequest
from roster_shared.web import request_id_var
from sso_gateway.records import CleverLogin, CodeGrant, PendingAuthorize, Ref, SessionRecord, ref
from sso_gateway.runtime import Gateway
from sso_gateway.security import add_query, new_secret

TOUCH_EVERY = 60.0
log = logging.getLogger("sso.session")


def resolve_request(
    product: Product, clever: CleverLogin, *, email: str | None = None, sis_id: str | None = None
) -> ResolveRequest:
    """The one builder of a resolve request. The fallbacks (email, sis_id) only matter at a first login;
    a session re-check sends the Clever ID alone (it is bound by then). Raises ValidationError when
    Clever's answer does not fit the contract."""
    return ResolveRequest(
        product=product,
        clever_user_id=clever.user_id,
        clever_district_id=clever.district_id,
        email=email if email and len(email) <= 320 else None,
        clever_role=clever.role,
        sis_id=sis_id,
    )


def console_request(clever: CleverLogin) -> ConsoleResolveRequest:
    """The console's resolve request (Clever ID, district, role; no email). Raises ValidationError."""
    return ConsoleResolveRequest(
        clever_user_id=clever.user_id, clever_district_id=clever.district_id, clever_role=clever.role
    )


async def load_session(gw: Gateway, request: Request) -> tuple[Ref, SessionRecord] | None:
    """The browser's live session (by its hashed id), or None. Enforces the idle and absolute timeouts."""
    sid = request.cookies.get(gw.cookies.session)
    if not sid:
        return None
    at = ref(sid)
    record = await gw.records.get(SessionRecord, at)
    if record is None:
        return None
    now = gw.now()
    s = gw.settings
    if record.created + s.session_absolute_seconds < now or record.seen + s.session_idle_seconds < now:
        await gw.records.delete(SessionRecord, at)
        return None
    if now - record.seen > TOUCH_EVERY:
        record = record.model_copy(update={"seen": now})
        await gw.records.put(at, record, _ttl(gw, record))
    return at, record


def _ttl(gw: Gateway, record: SessionRecord) -> float:
    s = gw.settings
    remaining = record.created + s.session_absolute_seconds - gw.now()
    return max(1.0, min(float(s.session_idle_seconds), remaining))


async def replace_session(
    gw: Gateway, request: Request, response: Response, record: SessionRecord
) -> tuple[Ref, SessionRecord]:
    """Ends whatever session this browser had (shared classroom devices) and starts a new one with a new
    id, so the old id is worthless even to someone who copied it."""
    old = request.cookies.get(gw.cookies.session)
    if old:
        await gw.records.delete(SessionRecord, ref(old))
    sid = new_secret()
    now = gw.now()
    record = record.model_copy(update={"created": now, "seen": now, "auth_time": int(now)})
    at = ref(sid)
    await gw.records.put(at, record, _ttl(gw, record))
    gw.cookies.set(response, gw.cookies.session, sid)
    return at, record


async def end_session(gw: Gateway, request: Request, response: Response) -> None:
    sid = request.cookies.get(gw.cookies.session)
    if sid:
        await gw.records.delete(SessionRecord, ref(sid))
    gw.cookies.clear(response, gw.cookies.session)


async def issue_code(gw: Gateway, pending: PendingAuthorize, sid: Ref, session: SessionRecord) -> str:
    """A one-time code for the frontend (single use, `code_seconds`), bound to the client, its redirect
    URI, the session and the PKCE challenge. Returns the URL to send the browser to."""
    code = new_secret()
    grant = CodeGrant(
        client_id=pending.client_id,
        redirect_uri=pending.redirect_uri,
        sid=sid,
        nonce=pending.nonce,
        scope=pending.scope,
        code_challenge=pending.code_challenge,
        auth_time=session.auth_time,
        expires=gw.now() + gw.settings.code_seconds,
    )
    await gw.records.put(ref(code), grant, gw.settings.code_seconds)
    params = {"code": code, "iss": gw.issuer}
    if pending.state is not None:
        params["state"] = pending.state
    return add_query(pending.redirect_uri, params)


async def still_entitled(gw: Gateway, sid: Ref, record: SessionRecord) -> bool:
    """Re-checks with roster-api an account that was resolved more than `session_recheck_seconds` ago.
    A refusal ends the session; roster-api being unreachable does not (the session stays valid within its
    timeouts, so a roster-api blip does not log a classroom out)."""
    now = gw.now()
    if now - record.resolved_at <= gw.settings.session_recheck_seconds:
        return True
    if record.console:
        return await _console_still_entitled(gw, sid, record)
    try:
        result = await gw.roster.resolve(
            resolve_request(record.product, record.clever), request_id=request_id_var.get()
        )
    except (RosterApiUnavailable, RosterApiError) as exc:
        log.warning("session re-check skipped", extra={"fields": {"detail": str(exc)[:200]}})
        return True
    if isinstance(result, ResolveFailure) or result.account_id != record.sub:
        await gw.records.delete(SessionRecord, sid)
        reason = result.reason.value if isinstance(result, ResolveFailure) else "account_changed"
        log.info(
            "session ended by re-check", extra={"fields": {"reason": reason, "product": record.product.value}}
        )
        return False
    record = record.model_copy(
        update={
            "role": result.role.value,
            "district": result.district_id,
            "display_name": result.display_name,
            "resolved_at": now,
        }
    )
    await gw.records.put(sid, record, _ttl(gw, record))
    return True


async def _console_still_entitled(gw: Gateway, sid: Ref, record: SessionRecord) -> bool:
    """The console's re-check: still admitted, as the same identity, to the same district."""
    try:
        result = await gw.roster.console_resolve(
            console_request(record.clever), request_id=request_id_var.get()
        )
    except (RosterApiUnavailable, RosterApiError) as exc:
        log.warning("session re-check skipped", extra={"fields": {"detail": str(exc)[:200]}})
        return True
    if (
        isinstance(result, ResolveFailure)
        or result.actor != record.sub
        or result.district_id != record.district
    ):
        await gw.records.delete(SessionRecord, sid)
        reason = result.reason.value if isinstance(result, ResolveFailure) else "identity_changed"
        log.info("session ended by re-check", extra={"fields": {"reason": reason, "console": True}})
        return False
    record = record.model_copy(update={"role": result.clever_role.value, "resolved_at": gw.now()})
    await gw.records.put(sid, record, _ttl(gw, record))
    return True


def browser_id(gw: Gateway, request: Request) -> tuple[str, bool]:
    """The random id of this browser (binds login transactions to it); True when it must be set."""
    current = request.cookies.get(gw.cookies.browser)
    if current and 20 <= len(current) <= 100:
        return current, False
    return new_secret(), True
