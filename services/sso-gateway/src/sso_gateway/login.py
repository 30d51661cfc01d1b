"""The Clever leg (docs/design.md, "Logging in with Clever"): gateway-initiated logins with a fresh state
bound to the browser, Clever-initiated logins (portal, Instant Login: a code and no state) restarted at
Clever's authorize endpoint with a loop guard, codes redeemed once, then roster-api resolves the account."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import RedirectResponse, Response

from roster_shared.client import RosterApiError, RosterApiUnavailable
from roster_shared.contracts import Product, ResolveFailure, ResolveReason
from roster_shared.web import request_id_var
from sso_gateway import pages
from sso_gateway.clever import CleverError, CleverFailure, CleverIdentity, identify
from sso_gateway.pages import Failure
from sso_gateway.records import (
    CleverLogin,
    FinishedLogin,
    LoginTx,
    PendingAuthorize,
    ProblemRecord,
    SessionRecord,
    ref,
)
from sso_gateway.runtime import Gateway, ProductContext, ProductDep, gateway
from sso_gateway.security import add_query, digest, new_secret
from sso_gateway.sessions import (
    browser_id,
    console_request,
    issue_code,
    load_session,
    replace_session,
    resolve_request,
)

router = APIRouter(include_in_schema=False)
log = logging.getLogger("sso.login")

PROBLEM_SECONDS = 600
CONSOLE_NAME = "the district console"
FINISHED_LOGIN_SECONDS = 600
# Clever's error values we name in logs; anything else is logged as "other" (never echoed raw)
KNOWN_CLEVER_ERRORS = {
    "access_denied",
    "invalid_request",
    "unauthorized_client",
    "server_error",
    "invalid_scope",
}


def _event(gw: Gateway, product: Product, outcome: str, **fields: Any) -> None:
    gw.metrics.logins.labels(product.value, outcome).inc()
    log.info("clever login", extra={"fields": {"product": product.value, "outcome": outcome, **fields}})


async def begin(
    gw: Gateway,
    request: Request,
    at: ProductContext,
    *,
    pending: str | None,
    initiated: str,
    console: bool = False,
) -> Response:
    """Redirect to Clever with a fresh state (256 bits), kept server-side under its hash, single use,
    bound to this browser, valid `state_seconds`."""
    browser, is_new = browser_id(gw, request)
    state = new_secret()
    tx = LoginTx(
        product=at.product,
        browser=digest(browser),
        pending=pending,
        initiated=initiated,
        created=gw.now(),
        console=console,
    )
    await gw.records.put(ref(state), tx, gw.settings.state_seconds)
    url = add_query(
        gw.settings.clever_authorize_url,
        {
            "response_type": "code",
            "client_id": at.conf.clever_client_id,
            "redirect_uri": at.conf.clever_redirect_uri,
            "state": state,
        },
    )
    response = RedirectResponse(url, status_code=303)
    if is_new:
        gw.cookies.set(response, gw.cookies.browser, browser)
    return response


def landing(gw: Gateway, product: Product) -> str:
    """Where a login that no frontend asked for ends: the product's login-initiation URI (OIDC
    third-party-initiated login), so the frontend starts its normal flow and gets a code at once."""
    for client in gw.products[product].clients:
        if client.login_initiation_uri and not client.console:
            return add_query(client.login_initiation_uri, {"iss": gw.issuer})
    return "/account"


async def _problem(
    gw: Gateway,
    product: Product,
    kind: str,
    *,
    reference: str | None = None,
    role: str = "user",
    console: bool = False,
) -> Response:
    """Callbacks never show a page at their own URL (it holds Clever's code and state): the problem is
    kept for a few minutes under a random id and the browser goes to `/problem/{id}` with a 303."""
    problem_id = new_secret()
    record = ProblemRecord(
        product=product, problem=str(kind), reference=reference, role=role, console=console
    )
    await gw.records.put(ref(problem_id), record, PROBLEM_SECONDS)
    return RedirectResponse(f"/problem/{problem_id}", status_code=303)


def console_retry(gw: Gateway, product: Product) -> str | None:
    """Where "Try again" goes after a console login failed: the console's own sign-in page."""
    for client in gw.products[product].clients:
        if client.console:
            return client.login_initiation_uri or None
    return None


@router.get("/login/{product_name}", response_model=None)
async def login_page(at: ProductDep) -> Response:
    return pages.render(
        "login.html",
        title=f"Log in to {at.conf.display_name}",
        product_name=at.conf.display_name,
        start_url=f"/login/{at.product.value}/start",
    )


@router.get("/login/{product_name}/start", response_model=None)
async def login_start(at: ProductDep, request: Request) -> Response:
    return await begin(gateway(request), request, at, pending=None, initiated="page")


def _tx_fits(gw: Gateway, tx: LoginTx, product: Product, browser: str) -> bool:
    return (
        tx.product == product
        and bool(browser)
        and digest(browser) == tx.browser
        and tx.created + gw.settings.state_seconds >= gw.now()
    )


async def _replayed(gw: Gateway, request: Request, product: Product, state: str, browser: str) -> Response:
    """A callback whose state is gone (back button, refresh): continue if this browser already finished
    this very login, otherwise a friendly "expired" page. Never a second redemption, never a 500."""
    used = await gw.records.get(FinishedLogin, ref(state))
    if used and browser and used.browser == digest(browser) and used.product == product:
        live = await load_session(gw, request)
        if live is not None and live[1].product == product:
            _event(gw, product, "replay_continued")
            return RedirectResponse(landing(gw, product), status_code=303)
    _event(gw, product, "state_invalid")
    return await _problem(gw, product, Failure.STATE_INVALID)


@router.get("/callback/clever/{product_name}", response_model=None)
async def clever_callback(at: ProductDep, request: Request) -> Response:
    """The product is the one whose registered redirect URI Clever called, never a query parameter.
    Every outcome is a 303 to a clean URL or a friendly page; the query string never reaches a log."""
    gw = gateway(request)
    product = at.product
    q = request.query_params
    state, code, error = q.get("state"), q.get("code"), q.get("error")

    if error:
        if state:
            await gw.records.pop(LoginTx, ref(state))
        named = error if error in KNOWN_CLEVER_ERRORS else "other"
        _event(gw, product, "clever_error", error=named)
        kind = Failure.ACCESS_DENIED if error == "access_denied" else Failure.CLEVER_ERROR
        return await _problem(gw, product, kind)
    if not code:
        _event(gw, product, "bad_callback")
        return await _problem(gw, product, Failure.CLEVER_ERROR)

    if not state:
        # Clever-initiated (portal icon, Instant Login): never redeem this code, it could be an
        # attacker's (login CSRF). Start our own login; Clever's session makes it seamless.
        if request.cookies.get(gw.cookies.restart):
            _event(gw, product, "restart_loop")
            return await _problem(gw, product, Failure.RESTART_LOOP)
        _event(gw, product, "restarted")
        response = await begin(gw, request, at, pending=None, initiated="clever")
        gw.cookies.set(response, gw.cookies.restart, "1", max_age=gw.settings.restart_guard_seconds)
        return response

    tx = await gw.records.pop(LoginTx, ref(state))
    browser = request.cookies.get(gw.cookies.browser, "")
    if tx is None:
        return await _replayed(gw, request, product, state, browser)
    if not _tx_fits(gw, tx, product, browser):
        _event(gw, product, "state_invalid")
        return await _problem(gw, product, Failure.STATE_INVALID)
    finished = FinishedLogin(browser=tx.browser, product=product)
    await gw.records.put(ref(state), finished, FINISHED_LOGIN_SECONDS)
    response = await _complete(gw, request, at, tx, code)
    # a stated callback arrived, so any restart loop is over, whatever the outcome
    gw.cookies.clear(response, gw.cookies.restart)
    return response


def _session(
    product: Product, identity: CleverIdentity, result: Any, clever: CleverLogin, now: float
) -> SessionRecord:
    return SessionRecord(
        product=product,
        sub=result.account_id,
        role=result.role.value,
        district=result.district_id,
        display_name=result.display_name,
        given_name=identity.given_name,
        family_name=identity.family_name,
        reference=result.reference,
        # what a later re-check asks roster-api again (no email or sis_id: the Clever ID is bound by then)
        clever=clever,
        resolved_at=now,
        created=now,
        seen=now,
        auth_time=int(now),
    )


async def _complete(gw: Gateway, request: Request, at: ProductContext, tx: LoginTx, code: str) -> Response:
    """Redeem Clever's code once, identify the person, resolve the account, start the session."""
    product = at.product
    timings: dict[str, float] = {}
    try:
        identity = await identify(gw.clever_http, gw.settings, at.conf, code, timings)
    except CleverError as exc:
        _event(gw, product, exc.kind.value, detail=exc.detail)
        return await _problem(gw, product, exc.kind, console=tx.console)
    finally:
        gw.metrics.upstream.labels("clever").observe(timings.get("clever", 0.0))
    if tx.console:
        return await _complete_console(gw, request, product, tx, identity)

    try:
        clever = CleverLogin(user_id=identity.user_id, district_id=identity.district_id, role=identity.role)
        resolve = resolve_request(product, clever, email=identity.email, sis_id=identity.sis_id)
    except ValidationError:
        _event(gw, product, "clever_bad_response", detail="identity does not fit the resolve contract")
        return await _problem(gw, product, CleverFailure.BAD_RESPONSE)
    result = await _ask_roster(gw, product, gw.roster.resolve(resolve, request_id=request_id_var.get()))
    if isinstance(result, Response):
        return result
    if isinstance(result, ResolveFailure):
        _event(gw, product, "denied", reason=result.reason.value, reference=result.reference)
        return await _problem(
            gw, product, result.reason, reference=result.reference, role=identity.role.value
        )

    record = _session(product, identity, result, clever, gw.now())
    return await _start_session(gw, request, tx, record)


async def _start_session(gw: Gateway, request: Request, tx: LoginTx, record: SessionRecord) -> Response:
    """The new session replaces this browser's; the frontend that asked gets its code."""
    product = record.product
    pending = await gw.records.pop(PendingAuthorize, ref(tx.pending)) if tx.pending else None
    response = RedirectResponse("/account", status_code=303)
    sid, stored = await replace_session(gw, request, response, record)
    _event(gw, product, "success", reference=record.reference, initiated=tx.initiated, console=tx.console)
    if pending is not None and pending.product == product:
        target = await issue_code(gw, pending, sid, stored)
    else:
        target = landing(gw, product)
    response.headers["location"] = target
    return response


T = TypeVar("T")


async def _ask_roster(
    gw: Gateway, product: Product, call: Awaitable[T], *, console: bool = False
) -> T | Response:
    """roster-api's answer, or the problem page when it cannot give one."""
    started = time.perf_counter()
    try:
        return await call
    except RosterApiUnavailable as exc:
        _event(gw, product, "roster_unavailable", detail=str(exc))
        return await _problem(gw, product, Failure.ROSTER_UNAVAILABLE, console=console)
    except RosterApiError as exc:
        _event(gw, product, "roster_error", status=exc.status_code, code=exc.code)
        kind = Failure.ROSTER_UNAVAILABLE if exc.status_code == 429 else Failure.MISCONFIGURED
        return await _problem(gw, product, kind, console=console)
    finally:
        gw.metrics.upstream.labels("roster-api").observe(time.perf_counter() - started)


async def _complete_console(
    gw: Gateway, request: Request, product: Product, tx: LoginTx, identity: CleverIdentity
) -> Response:
    """A login for the district console: roster-api's console resolve decides (district admins, and
    staff where the district allows it, of a linked Clever district); the session's `sub` is the console
    identity (`clever:<user id>`), bound to its district."""
    try:
        clever = CleverLogin(user_id=identity.user_id, district_id=identity.district_id, role=identity.role)
        asked = console_request(clever)
    except ValidationError:
        _event(gw, product, "clever_bad_response", detail="identity does not fit the console contract")
        return await _problem(gw, product, CleverFailure.BAD_RESPONSE, console=True)
    call = gw.roster.console_resolve(asked, request_id=request_id_var.get())
    result = await _ask_roster(gw, product, call, console=True)
    if isinstance(result, Response):
        return result
    if isinstance(result, ResolveFailure):
        _event(gw, product, "denied", reason=result.reason.value, reference=result.reference, console=True)
        kind = Failure.CONSOLE_ROLE if result.reason is ResolveReason.ROLE_MISMATCH else result.reason
        return await _problem(
            gw, product, kind, reference=result.reference, role=identity.role.value, console=True
        )
    now = gw.now()
    record = SessionRecord(
        product=product,
        sub=result.actor,
        role=result.clever_role.value,
        district=result.district_id,
        display_name=f"{identity.given_name} {identity.family_name}".strip() or result.actor,
        given_name=identity.given_name,
        family_name=identity.family_name,
        reference=result.reference,
        clever=clever,
        resolved_at=now,
        created=now,
        seen=now,
        auth_time=int(now),
        console=True,
    )
    return await _start_session(gw, request, tx, record)


@router.get("/problem/{problem_id}", response_model=None)
async def problem(problem_id: str, request: Request) -> Response:
    """The friendly page of a failed login (refreshing it shows it again; it expires after 10 minutes)."""
    gw = gateway(request)
    record = await gw.records.get(ProblemRecord, ref(problem_id)) if len(problem_id) <= 64 else None
    conf = gw.products.get(record.product) if record else None
    if record is None or conf is None:
        return pages.problem_page(Failure.STATE_INVALID, product_name="Login", retry_url=None)
    console = record.console
    return pages.problem_page(
        record.problem,
        product_name=CONSOLE_NAME if console else conf.display_name,
        retry_url=console_retry(gw, record.product) if console else f"/login/{record.product.value}",
        reference=record.reference,
        role=record.role,
    )


@router.get("/account", response_model=None)
async def account(request: Request) -> Response:
    """Who is logged in on this device, with a log-out button (shared devices)."""
    gw = gateway(request)
    live = await load_session(gw, request)
    if live is None:
        return pages.render(
            "error.html",
            status=200,
            title="You are not logged in",
            product_name="Login",
            message="Open RocketLit or InnerOrbit and choose Log in with Clever.",
            next_step=None,
            reference=None,
            retry_url=None,
        )
    _, record = live
    browser = request.cookies.get(gw.cookies.browser, "")
    name = CONSOLE_NAME if record.console else gw.products[record.product].display_name
    return pages.render(
        "signed_in.html",
        title=f"Logged in to {name}",
        product_name=name,
        display_name=record.display_name,
        csrf=digest("csrf:" + browser) if browser else "",
    )
