"""Server-side sessions (one per browser: a new login replaces the old one) and one-time codes."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from starlette.responses import Response

from roster_shared.client import RosterApiError, RosterApiUnavailable
from roster_shared.contracts import CleverRole, Product, ResolveFailure, ResolveRequest
from roster_shared.web import request_id_var
from sso_gateway.runtime import Gateway
from sso_gateway.security import add_query, digest, new_secret

TOUCH_EVERY = 60.0
log = logging.getLogger("sso.session")


async def load_session(gw: Gateway, request: Request) -> tuple[str, dict[str, Any]] | None:
    """The browser's live session, or None. Enforces the idle and absolute timeouts."""
    sid = request.cookies.get(gw.cookies.session)
    if not sid:
        return None
    key = "sess:" + digest(sid)
    record = await gw.store.get(key)
    if record is None:
        return None
    now = gw.now()
    s = gw.settings
    if record["created"] + s.session_absolute_seconds < now or record["seen"] + s.session_idle_seconds < now:
        await gw.store.delete(key)
        return None
    if now - record["seen"] > TOUCH_EVERY:
        record["seen"] = now
        await gw.store.put(key, record, _ttl(gw, record))
    return sid, record


def _ttl(gw: Gateway, record: dict[str, Any]) -> float:
    s = gw.settings
    remaining = float(record["created"]) + s.session_absolute_seconds - gw.now()
    return max(1.0, min(float(s.session_idle_seconds), remaining))


async def replace_session(
    gw: Gateway, request: Request, response: Response, record: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """Ends whatever session this browser had (shared classroom devices) and starts a new one with a new
    id, so the old id is worthless even to someone who copied it."""
    old = request.cookies.get(gw.cookies.session)
    if old:
        await gw.store.delete("sess:" + digest(old))
    sid = new_secret()
    now = gw.now()
    record = {**record, "created": now, "seen": now, "auth_time": int(now)}
    await gw.store.put("sess:" + digest(sid), record, _ttl(gw, record))
    gw.cookies.set(response, gw.cookies.session, sid)
    return sid, record


async def end_session(gw: Gateway, request: Request, response: Response) -> None:
    sid = request.cookies.get(gw.cookies.session)
    if sid:
        await gw.store.delete("sess:" + digest(sid))
    gw.cookies.clear(response, gw.cookies.session)


async def issue_code(gw: Gateway, pending: dict[str, Any], sid: str, session: dict[str, Any]) -> str:
    """A one-time code for the frontend (single use, `code_seconds`), bound to the client, its redirect
    URI, the session and the PKCE challenge. Returns the URL to send the browser to."""
    code = new_secret()
    grant = {
        "client_id": pending["client_id"],
        "redirect_uri": pending["redirect_uri"],
        "sid": digest(sid),
        "nonce": pending.get("nonce"),
        "scope": pending["scope"],
        "code_challenge": pending.get("code_challenge"),
        "auth_time": session["auth_time"],
        # checked as well as the store's TTL, so the 60 s hold whatever the store's clock
        "expires": gw.now() + gw.settings.code_seconds,
    }
    await gw.store.put("code:" + digest(code), grant, gw.settings.code_seconds)
    params = {"code": code, "iss": gw.issuer}
    if pending.get("state") is not None:
        params["state"] = pending["state"]
    return add_query(pending["redirect_uri"], params)


async def still_entitled(gw: Gateway, sid: str, record: dict[str, Any]) -> bool:
    """Re-checks with roster-api an account that was resolved more than `session_recheck_seconds` ago.
    A refusal ends the session; roster-api being unreachable does not (the session stays valid within its
    timeouts, so a roster-api blip does not log a classroom out)."""
    now = gw.now()
    if now - float(record.get("resolved_at", 0)) <= gw.settings.session_recheck_seconds:
        return True
    clever = record["clever"]
    try:
        result = await gw.roster.resolve(
            ResolveRequest(
                product=Product(record["product"]),
                clever_user_id=clever["user_id"],
                clever_district_id=clever["district_id"],
                email=None,
                clever_role=CleverRole(clever["role"]),
            ),
            request_id=request_id_var.get(),
        )
    except (RosterApiUnavailable, RosterApiError) as exc:
        log.warning("session re-check skipped", extra={"fields": {"detail": str(exc)[:200]}})
        return True
    key = "sess:" + digest(sid)
    if isinstance(result, ResolveFailure) or result.account_id != record["sub"]:
        await gw.store.delete(key)
        reason = result.reason.value if isinstance(result, ResolveFailure) else "account_changed"
        log.info(
            "session ended by re-check", extra={"fields": {"reason": reason, "product": record["product"]}}
        )
        return False
    record.update(
        {"role": result.role.value, "district": result.district_id, "display_name": result.display_name}
    )
    record["resolved_at"] = now
    await gw.store.put(key, record, _ttl(gw, record))
    return True


def browser_id(gw: Gateway, request: Request) -> tuple[str, bool]:
    """The random id of this browser (binds login transactions to it); True when it must be set."""
    current = request.cookies.get(gw.cookies.browser)
    if current and 20 <= len(current) <= 100:
        return current, False
    return new_secret(), True
