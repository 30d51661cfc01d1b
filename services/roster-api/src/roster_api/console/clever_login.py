""" "Log in with Clever": the console is an OpenID Connect client of the sso-gateway (Authlib; code flow
with PKCE S256, state and nonce). The gateway's console client admits Clever district admins (and staff
where the district allows it) through `POST /v1/console/resolve` and puts `sub` = `clever:<user id>` and
the district in the ID token. The callback checks the ID token (signature from the gateway's JWKS,
issuer, audience, expiry, nonce) and starts the same signed console session a key sign-in starts, bound
to the token's district.

State, nonce and PKCE verifier live in a short-lived signed cookie (no server table); only `state`
travels in a URL. No code, token or key is ever logged."""

from __future__ import annotations

import hmac
import logging
import secrets
import time
import warnings
from typing import Any

# Authlib 1.9 warns on import that it prefers the `httpx2` package; httpx is what this stack pins. Its
# deprecate module installs an "always" filter when imported, so ours goes in front of it, for this import.
import authlib.deprecate  # noqa: F401
import httpx
import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import Response
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry
from sqlmodel import Session

from roster_api.console import sessions
from roster_api.console.auth_pages import login_page
from roster_api.console.web import ConsoleRoute, district_linked, redirect, set_session_cookie, settings_of
from roster_api.deps import EngineDep
from roster_api.settings import Settings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="The httpx module is deprecated")
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

router = APIRouter(route_class=ConsoleRoute)
log = logging.getLogger("roster_api.console.clever")

CALLBACK_PATH = "/console/auth/callback"
FLOW_SECONDS = 10 * 60
TIMEOUT = httpx.Timeout(5.0)
ID_TOKEN_ALGORITHMS = ["ES256", "RS256"]


class SignInFailed(Exception):
    """A Clever sign-in that cannot finish; `message` is shown on the sign-in page."""

    def __init__(self, why: str, message: str, status_code: int = 400) -> None:
        super().__init__(why)
        self.why = why
        self.message = message
        self.status_code = status_code


def flow_cookie_name(settings: Settings) -> str:
    return "console_oidc" if not sessions.secure_cookies(settings) else "__Host-console_oidc"


def _transport(request: Request) -> httpx.AsyncBaseTransport | None:
    """Tests put a transport to a fake gateway here; in service the gateway is reached over the network."""
    transport: httpx.AsyncBaseTransport | None = getattr(request.app.state, "console_oidc_transport", None)
    return transport


def _client(settings: Settings, request: Request) -> AsyncOAuth2Client:
    return AsyncOAuth2Client(
        client_id=settings.console_oidc_client_id,
        client_secret=settings.console_oidc_client_secret.get_secret_value(),
        token_endpoint_auth_method="client_secret_basic",  # noqa: S106 (a method name)
        redirect_uri=settings.console_oidc_redirect_uri,
        scope="openid profile",
        code_challenge_method="S256",
        timeout=TIMEOUT,
        transport=_transport(request),
    )


async def _get_json(request: Request, url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=TIMEOUT, transport=_transport(request)) as http:
        response = await http.get(url)
    if response.status_code != 200:
        raise SignInFailed("gateway_http", "The login service did not answer. Try again in a minute.", 502)
    body = response.json()
    if not isinstance(body, dict):
        raise SignInFailed("gateway_body", "The login service did not answer. Try again in a minute.", 502)
    return body


async def _metadata(request: Request, settings: Settings) -> dict[str, Any]:
    issuer = settings.console_oidc_issuer.rstrip("/")
    meta = await _get_json(request, issuer + "/.well-known/openid-configuration")
    if meta.get("issuer") != issuer:
        raise SignInFailed("issuer_mismatch", "The login service is misconfigured. Tell support.", 502)
    return meta


@router.get("/login/clever", include_in_schema=False)
async def start(request: Request) -> Response:
    settings = settings_of(request)
    if not settings.console_oidc_enabled:
        return redirect("/console/login")
    state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
    try:
        meta = await _metadata(request, settings)
    except (httpx.HTTPError, ValueError, SignInFailed) as exc:
        return _failed(request, exc)
    async with _client(settings, request) as client:
        url, _ = client.create_authorization_url(
            str(meta["authorization_endpoint"]), state=state, code_verifier=verifier, nonce=nonce
        )
    response = redirect(url)
    flow = {"state": state, "nonce": nonce, "verifier": verifier, "at": time.time()}
    response.set_cookie(
        flow_cookie_name(settings),
        sessions.sign(settings, "oidc", flow),
        max_age=FLOW_SECONDS,
        path="/",
        secure=sessions.secure_cookies(settings),
        httponly=True,
        samesite="lax",
    )
    return response


def _flow(request: Request, settings: Settings) -> dict[str, str]:
    """The sign-in this browser started (state, nonce, verifier), if it is ours and recent."""
    raw = request.cookies.get(flow_cookie_name(settings), "")
    payload = sessions.unsign(settings, "oidc", raw) if raw else None
    expired = "Your sign-in took too long or was started elsewhere. Please sign in again."
    if payload is None or time.time() - float(str(payload.get("at", 0))) > FLOW_SECONDS:
        raise SignInFailed("no_flow", expired)
    flow = {k: payload.get(k) for k in ("state", "nonce", "verifier")}
    if not all(isinstance(v, str) and v for v in flow.values()):
        raise SignInFailed("no_flow", expired)
    return {k: str(v) for k, v in flow.items()}


def check_id_token(
    id_token: str, keys: KeySet, *, issuer: str, client_id: str, nonce: str
) -> tuple[str, str]:
    """The console identity (`clever:<user id>`) and district of a valid ID token for this client and
    this sign-in; SignInFailed otherwise."""
    try:
        claims = jwt.decode(id_token, keys, algorithms=ID_TOKEN_ALGORITHMS).claims
        JWTClaimsRegistry(
            leeway=30,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": client_id},
            exp={"essential": True},
            sub={"essential": True},
            nonce={"essential": True, "value": nonce},
        ).validate(claims)
    except (JoseError, ValueError) as exc:
        raise SignInFailed(
            f"id_token:{type(exc).__name__}", "The sign-in could not be verified. Please try again."
        ) from exc
    sub, district = claims.get("sub"), claims.get("district")
    if claims.get("product") != "console" or not str(sub).startswith("clever:") or not district:
        raise SignInFailed("not_console", "That login was not a district console login.", 403)
    return str(sub), str(district)


async def _redeem(request: Request, settings: Settings, flow: dict[str, str]) -> tuple[str, str]:
    q = request.query_params
    if q.get("error"):
        raise SignInFailed("refused", "The Clever sign-in was cancelled or refused. You can try again.")
    given = q.get("state", "")
    if not hmac.compare_digest(given.encode(), flow["state"].encode()):
        raise SignInFailed(
            "state", "Your sign-in took too long or was started elsewhere. Please sign in again."
        )
    issuer = settings.console_oidc_issuer.rstrip("/")
    if q.get("iss") is not None and q.get("iss") != issuer:
        raise SignInFailed("iss", "That sign-in came from an unknown login service.")
    code = q.get("code", "")
    if not code or len(code) > 512:
        raise SignInFailed("no_code", "The sign-in did not complete. Please try again.")
    meta = await _metadata(request, settings)
    async with _client(settings, request) as client:
        token = await client.fetch_token(
            str(meta["token_endpoint"]), code=code, code_verifier=flow["verifier"]
        )
    jwks: Any = await _get_json(request, str(meta["jwks_uri"]))
    keys = KeySet.import_key_set(jwks)
    id_token = token.get("id_token")
    if not isinstance(id_token, str):
        raise SignInFailed("no_id_token", "The sign-in could not be verified. Please try again.")
    return check_id_token(
        id_token, keys, issuer=issuer, client_id=settings.console_oidc_client_id, nonce=flow["nonce"]
    )


def _district_linked(engine: sa.Engine, district_id: str) -> bool:
    with Session(engine) as session:
        return district_linked(session, district_id)


@router.get("/auth/callback", include_in_schema=False)
async def callback(request: Request, engine: EngineDep) -> Response:
    settings = settings_of(request)
    if not settings.console_oidc_enabled:
        return redirect("/console/login")
    try:
        flow = _flow(request, settings)
        actor, district_id = await _redeem(request, settings, flow)
        if not _district_linked(engine, district_id):
            raise SignInFailed(
                "no_district", "Your district is not set up in the console. Tell support.", 403
            )
    except (SignInFailed, OAuthError, httpx.HTTPError, ValueError, KeyError) as exc:
        return _failed(request, exc)
    console = sessions.new_session(
        kind="clever", subject=actor.removeprefix("clever:"), actor=actor, district_id=district_id
    )
    log.info("console sign-in", extra={"fields": {"kind": "clever", "district_id": district_id}})
    response = redirect("/console/")
    set_session_cookie(request, response, sessions.encode(settings, console))
    response.delete_cookie(flow_cookie_name(settings), path="/")
    return response


def _failed(request: Request, exc: Exception) -> Response:
    """The sign-in page again with what went wrong; the log names the kind of failure only."""
    if isinstance(exc, SignInFailed):
        why, message, status_code = exc.why, exc.message, exc.status_code
    elif isinstance(exc, OAuthError):
        why, message, status_code = f"oauth:{exc.error}", "The sign-in expired. Please sign in again.", 400
    else:
        why, status_code = f"gateway:{type(exc).__name__}", 502
        message = "The login service is not reachable right now. Try again in a minute."
    log.info("console clever sign-in failed", extra={"fields": {"why": why[:80]}})
    response = login_page(request, error=message, status_code=status_code)
    response.delete_cookie(flow_cookie_name(settings_of(request)), path="/")
    return response
