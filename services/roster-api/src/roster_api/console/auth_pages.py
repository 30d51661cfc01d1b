"""Sign-in with a personal API key, sign-out, the start page, the static assets and the district list."""

from __future__ import annotations

import secrets
import time
from typing import Annotated
from urllib.parse import quote, urlencode, urljoin

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from roster_api import audit
from roster_api.auth import Scope, authenticate
from roster_api.console import sessions
from roster_api.console.web import (
    HERE,
    PAGE_SIZE,
    ConsoleDep,
    ConsoleRoute,
    FormDep,
    SupportDep,
    notice_params,
    redirect,
    render,
    set_session_cookie,
    settings_of,
)
from roster_api.deps import EngineDep, KeyCacheDep, SessionDep
from roster_api.districts import service as districts
from roster_api.errors import NotFound
from roster_api.settings import Settings

router = APIRouter(route_class=ConsoleRoute)

STATIC = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
}
MAX_KEY_LENGTH = 200


@router.get("/static/{name}", include_in_schema=False)
def static(name: str) -> Response:
    media_type = STATIC.get(name)
    if media_type is None:
        raise NotFound("No such file.")
    return FileResponse(
        HERE / "static" / name, media_type=media_type, headers={"Cache-Control": "public, max-age=300"}
    )


def login_page(
    request: Request, *, error: str | None = None, status_code: int = 200, clever_signed_out: bool = False
) -> Response:
    settings = settings_of(request)
    token = secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        {
            "title": "Sign in",
            "login_csrf": token,
            "error": error,
            "clever_login": settings.console_oidc_enabled,
            "gateway_logout": gateway_logout_url(settings)
            if clever_signed_out and settings.console_oidc_enabled
            else None,
        },
        status_code=status_code,
    )
    response.set_cookie(
        sessions.pre_cookie_name(settings),
        sessions.sign(settings, "pre", {"csrf": token, "at": time.time()}),
        max_age=sessions.PRE_COOKIE_SECONDS,
        path="/",
        secure=sessions.secure_cookies(settings),
        httponly=True,
        samesite="lax",
    )
    return response


@router.get("/login", include_in_schema=False)
def login_form(request: Request) -> Response:
    return login_page(request, clever_signed_out=request.query_params.get("clever") == "1")


def _pre_token(request: Request) -> str | None:
    settings = settings_of(request)
    payload = sessions.unsign(settings, "pre", request.cookies.get(sessions.pre_cookie_name(settings), ""))
    if payload is None or time.time() - float(str(payload.get("at", 0))) > sessions.PRE_COOKIE_SECONDS:
        return None
    token = payload.get("csrf")
    return token if isinstance(token, str) else None


@router.post("/login", include_in_schema=False)
async def login(request: Request, engine: EngineDep, cache: KeyCacheDep) -> Response:
    form = await request.form(max_files=0, max_fields=5)
    expected = _pre_token(request)
    given = form.get("csrf_token")
    if expected is None or not sessions.csrf_matches(expected, given if isinstance(given, str) else None):
        return login_page(request, error="The sign-in form expired. Please try again.", status_code=403)
    raw = form.get("api_key")
    raw_key = raw.strip() if isinstance(raw, str) else ""
    principal = None
    if 0 < len(raw_key) <= MAX_KEY_LENGTH:
        principal = await run_in_threadpool(authenticate, engine=engine, cache=cache, raw_key=raw_key)
    if principal is None or not principal.has(Scope.ADMIN):
        message = "That key is not valid, was revoked, or lacks the admin scope."
        return login_page(request, error=message, status_code=401)
    console = sessions.new_session(
        kind="key", subject=principal.key_id, actor=principal.name, district_id=principal.district_id
    )
    await run_in_threadpool(_audit_sign_in, engine, console)
    response = redirect("/console/")
    set_session_cookie(request, response, sessions.encode(settings_of(request), console))
    response.delete_cookie(sessions.pre_cookie_name(settings_of(request)), path="/")
    return response


def _audit_sign_in(engine: sa.Engine, console: sessions.ConsoleSession) -> None:
    with Session(engine) as session:
        audit.record(
            session=session,
            actor=console.actor,
            action="console.sign_in",
            district_id=console.district_id,
            details={"kind": console.kind},
        )
        session.commit()


@router.post("/logout", include_in_schema=False)
def logout(request: Request, console: ConsoleDep, form: FormDep, session: SessionDep) -> Response:
    audit.record(
        session=session, actor=console.actor, action="console.sign_out", district_id=console.district_id
    )
    response = redirect(_signed_out_url(settings_of(request), console))
    request.state.console_cookie = None
    set_session_cookie(request, response, None)
    return response


def _signed_out_url(settings: Settings, console: sessions.ConsoleSession) -> str:
    params = notice_params("You are signed out.")
    if console.kind == "clever" and settings.console_oidc_enabled:
        params["clever"] = "1"  # the sign-in page offers to end the gateway's session as well
    return "/console/login?" + urlencode(params)


def gateway_logout_url(settings: Settings) -> str:
    """RP-initiated logout at the gateway: it asks "Log out?" and comes back to the sign-in page, so
    the next person at a shared computer is not signed in again by "Log in with Clever". A link, not a
    redirect after the sign-out form: the console's CSP allows forms to post to itself only."""
    back = urljoin(settings.console_oidc_redirect_uri, "/console/login")
    query = urlencode({"client_id": settings.console_oidc_client_id, "post_logout_redirect_uri": back})
    return f"{settings.console_oidc_issuer.rstrip('/')}/logout?{query}"


@router.get("/", include_in_schema=False)
def start(console: ConsoleDep) -> Response:
    if console.district_id is not None:
        return redirect(f"/console/d/{console.district_id}")
    return redirect("/console/districts")


@router.get("/districts", include_in_schema=False)
def district_list(
    request: Request,
    console: SupportDep,
    session: SessionDep,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Response:
    rows, total = districts.list_districts(session=session, only=None, limit=PAGE_SIZE, offset=offset)
    return render(
        request,
        "districts.html",
        {
            "title": "Districts",
            "nav": "districts",
            "rows": rows,
            "total": total,
            "offset": offset,
            "limit": PAGE_SIZE,
        },
    )


@router.get("/switch", include_in_schema=False)
def switch(console: SupportDep, district_id: Annotated[str, Query(max_length=64)]) -> Response:
    return redirect(f"/console/d/{quote(district_id.strip(), safe='')}")


not_found_router = APIRouter(route_class=ConsoleRoute)


@not_found_router.get("/{address:path}", include_in_schema=False)
def not_found(console: ConsoleDep, address: str) -> Response:
    raise NotFound("There is no such page in the console.")
