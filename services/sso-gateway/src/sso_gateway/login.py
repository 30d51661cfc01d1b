"""The Clever leg (DESIGN.md "Clever login"): gateway-initiated logins with a fresh state bound to the
browser, Clever-initiated logins (portal, Instant Login: a code and no state) restarted at Clever's
authorize endpoint with a loop guard, codes redeemed once, then roster-api resolves the account."""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import RedirectResponse, Response

from roster_shared.client import RosterApiError, RosterApiUnavailable
from roster_shared.contracts import Product, ResolveFailure, ResolveRequest
from roster_shared.web import request_id_var
from sso_gateway import pages
from sso_gateway.clever import CleverError, identify
from sso_gateway.runtime import Gateway, gateway
from sso_gateway.security import add_query, digest, new_secret
from sso_gateway.sessions import browser_id, issue_code, load_session, replace_session
from sso_gateway.settings import ProductSettings

router = APIRouter(include_in_schema=False)
log = logging.getLogger("sso.login")

PROBLEM_SECONDS = 600
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
    product: Product,
    conf: ProductSettings,
    *,
    pending: str | None,
    initiated: str,
) -> Response:
    """Redirect to Clever with a fresh state (256 bits), stored server-side, single use, bound to this
    browser, valid `state_seconds`."""
    browser, is_new = browser_id(gw, request)
    state = new_secret()
    await gw.store.put(
        "tx:" + state,
        {
            "product": product.value,
            "browser": digest(browser),
            "pending": pending,
            "initiated": initiated,
            "created": gw.now(),
        },
        gw.settings.state_seconds,
    )
    url = add_query(
        gw.settings.clever_authorize_url,
        {
            "response_type": "code",
            "client_id": conf.clever_client_id,
            "redirect_uri": conf.clever_redirect_uri,
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
        if client.login_initiation_uri:
            return add_query(client.login_initiation_uri, {"iss": gw.issuer})
    return "/account"


async def _problem(
    gw: Gateway, product: Product, kind: str, *, reference: str | None = None, role: str = "user"
) -> Response:
    """Callbacks never show a page at their own URL (it holds Clever's code and state): the problem is
    kept for a few minutes under a random id and the browser goes to `/problem/{id}` with a 303."""
    problem_id = new_secret()
    record = {"product": product.value, "kind": kind, "reference": reference, "role": role}
    await gw.store.put("problem:" + problem_id, record, PROBLEM_SECONDS)
    return RedirectResponse(f"/problem/{problem_id}", status_code=303)


@router.get("/login/{product_name}", response_model=None)
async def login_page(product_name: str, request: Request) -> Response:
    gw = gateway(request)
    found = gw.product(product_name)
    if found is None:
        return pages.problem_page("bad_request", product_name="Login", retry_url=None)
    product, conf = found
    return pages.render(
        "login.html",
        title=f"Log in to {conf.display_name}",
        product_name=conf.display_name,
        start_url=f"/login/{product.value}/start",
    )


@router.get("/login/{product_name}/start", response_model=None)
async def login_start(product_name: str, request: Request) -> Response:
    gw = gateway(request)
    found = gw.product(product_name)
    if found is None:
        return pages.problem_page("bad_request", product_name="Login", retry_url=None)
    product, conf = found
    return await begin(gw, request, product, conf, pending=None, initiated="page")


@router.get("/callback/clever/{product_name}", response_model=None)
async def clever_callback(product_name: str, request: Request) -> Response:
    """The product is the one whose registered redirect URI Clever called, never a query parameter.
    Every outcome is a 303 to a clean URL or a friendly page; the query string never reaches a log."""
    gw = gateway(request)
    found = gw.product(product_name)
    if found is None:
        return pages.problem_page("bad_request", product_name="Login", retry_url=None)
    product, conf = found
    q = request.query_params
    state, code, error = q.get("state"), q.get("code"), q.get("error")

    if error:
        if state:
            await gw.store.pop("tx:" + state)
        named = error if error in KNOWN_CLEVER_ERRORS else "other"
        _event(gw, product, "clever_error", error=named)
        return await _problem(gw, product, "access_denied" if error == "access_denied" else "clever_error")
    if not code:
        _event(gw, product, "bad_callback")
        return await _problem(gw, product, "clever_error")

    if not state:
        # Clever-initiated (portal icon, Instant Login): never redeem this code, it could be an
        # attacker's (login CSRF). Start our own login; Clever's session makes it seamless.
        if request.cookies.get(gw.cookies.restart):
            _event(gw, product, "restart_loop")
            return await _problem(gw, product, "restart_loop")
        _event(gw, product, "restarted")
        response = await begin(gw, request, product, conf, pending=None, initiated="clever")
        gw.cookies.set(response, gw.cookies.restart, "1", max_age=gw.settings.restart_guard_seconds)
        return response

    tx = await gw.store.pop("tx:" + state)
    browser = request.cookies.get(gw.cookies.browser, "")
    if tx is None:
        # A replayed callback (back button, refresh): continue if this browser already finished this
        # very login, otherwise a friendly "expired" page. Never a second redemption, never a 500.
        used = await gw.store.get("used-tx:" + state)
        if used and browser and used["browser"] == digest(browser) and used["product"] == product.value:
            live = await load_session(gw, request)
            if live is not None and live[1]["product"] == product.value:
                _event(gw, product, "replay_continued")
                return RedirectResponse(landing(gw, product), status_code=303)
        _event(gw, product, "state_invalid")
        return await _problem(gw, product, "state_invalid")
    if (
        tx["product"] != product.value
        or not browser
        or digest(browser) != tx["browser"]
        or tx["created"] + gw.settings.state_seconds < gw.now()
    ):
        _event(gw, product, "state_invalid")
        return await _problem(gw, product, "state_invalid")
    await gw.store.put("used-tx:" + state, {"browser": tx["browser"], "product": product.value}, 600)
    response = await _complete(gw, request, product, conf, tx, code)
    # a stated callback arrived, so any restart loop is over, whatever the outcome
    gw.cookies.clear(response, gw.cookies.restart)
    return response


async def _complete(
    gw: Gateway, request: Request, product: Product, conf: ProductSettings, tx: dict[str, Any], code: str
) -> Response:
    """Redeem Clever's code once, identify the person, resolve the account, start the session."""

    timings: dict[str, float] = {}
    try:
        identity = await identify(gw.clever_http, gw.settings, conf, code, timings)
    except CleverError as exc:
        _event(gw, product, exc.kind.value, detail=exc.detail)
        return await _problem(gw, product, exc.kind.value)
    finally:
        gw.metrics.upstream.labels("clever").observe(timings.get("clever", 0.0))

    try:
        resolve_request = ResolveRequest(
            product=product,
            clever_user_id=identity.user_id,
            clever_district_id=identity.district_id,
            email=identity.email if identity.email and len(identity.email) <= 320 else None,
            clever_role=identity.role,
        )
    except ValidationError:
        _event(gw, product, "clever_bad_response", detail="identity does not fit the resolve contract")
        return await _problem(gw, product, "clever_bad_response")
    started = time.perf_counter()
    try:
        result = await gw.roster.resolve(resolve_request, request_id=request_id_var.get())
    except RosterApiUnavailable as exc:
        _event(gw, product, "roster_unavailable", detail=str(exc))
        return await _problem(gw, product, "roster_unavailable")
    except RosterApiError as exc:
        _event(gw, product, "roster_error", status=exc.status_code, code=exc.code)
        return await _problem(
            gw, product, "roster_unavailable" if exc.status_code == 429 else "misconfigured"
        )
    finally:
        gw.metrics.upstream.labels("roster-api").observe(time.perf_counter() - started)
    if isinstance(result, ResolveFailure):
        _event(gw, product, "denied", reason=result.reason.value, reference=result.reference)
        return await _problem(
            gw, product, result.reason.value, reference=result.reference, role=identity.role.value
        )

    record = {
        "product": product.value,
        "sub": result.account_id,
        "role": result.role.value,
        "district": result.district_id,
        "display_name": result.display_name,
        "given_name": identity.given_name,
        "family_name": identity.family_name,
        "reference": result.reference,
        # what a later re-check asks roster-api again (no email: the Clever ID is bound by now)
        "clever": {
            "user_id": identity.user_id,
            "district_id": identity.district_id,
            "role": identity.role.value,
        },
        "resolved_at": gw.now(),
    }
    pending = await gw.store.pop("req:" + tx["pending"]) if tx.get("pending") else None
    response = RedirectResponse("/account", status_code=303)
    sid, stored = await replace_session(gw, request, response, record)
    _event(gw, product, "success", reference=result.reference, initiated=tx["initiated"])
    if pending is not None and pending["product"] == product.value:
        target = await issue_code(gw, pending, sid, stored)
    else:
        target = landing(gw, product)
    response.headers["location"] = target
    return response


@router.get("/problem/{problem_id}", response_model=None)
async def problem(problem_id: str, request: Request) -> Response:
    """The friendly page of a failed login (refreshing it shows it again; it expires after 10 minutes)."""
    gw = gateway(request)
    record = await gw.store.get("problem:" + problem_id) if len(problem_id) <= 64 else None
    found = gw.product(record["product"]) if record else None
    if record is None or found is None:
        return pages.problem_page("state_invalid", product_name="Login", retry_url=None)
    product, conf = found
    return pages.problem_page(
        record["kind"],
        product_name=conf.display_name,
        retry_url=f"/login/{product.value}",
        reference=record["reference"],
        role=record["role"],
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
    name = gw.products[Product(record["product"])].display_name
    return pages.render(
        "signed_in.html",
        title=f"Logged in to {name}",
        product_name=name,
        display_name=record["display_name"],
        csrf=digest("csrf:" + browser) if browser else "",
    )
