"""OpenID Connect provider for the product frontends: discovery, JWKS, authorize (code flow; state,
nonce and PKCE S256 passed through and enforced; exact redirect URIs), token (client_secret_basic,
client_secret_post, or none + PKCE for public clients; codes single use), userinfo, RP-initiated logout.

/token and /userinfo answer OAuth-format errors (`{"error": "invalid_grant", ...}`, RFC 6749 §5.2,
RFC 6750 §3) because that is what every OIDC client library parses."""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from sso_gateway import pages
from sso_gateway.login import CONSOLE_NAME, begin
from sso_gateway.pages import Failure
from sso_gateway.records import AccessGrant, CodeGrant, PendingAuthorize, SessionRecord, UsedCode, ref
from sso_gateway.runtime import Gateway, ProductContext, RegisteredClient, gateway
from sso_gateway.security import add_query, digest, new_secret, pkce_matches
from sso_gateway.sessions import browser_id, end_session, issue_code, load_session, still_entitled

router = APIRouter(include_in_schema=False)
log = logging.getLogger("sso.oidc")
PKCE_RE = re.compile(r"^[A-Za-z0-9_-]{43,128}$")
SUPPORTED_SCOPES = ("openid", "profile")


@router.get("/.well-known/openid-configuration")
async def discovery(request: Request) -> dict[str, Any]:
    gw = gateway(request)
    return {
        "issuer": gw.issuer,
        "authorization_endpoint": gw.url("/authorize"),
        "token_endpoint": gw.url("/token"),
        "userinfo_endpoint": gw.url("/userinfo"),
        "jwks_uri": gw.url("/jwks.json"),
        "end_session_endpoint": gw.url("/logout"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": sorted({k.alg for k in gw.keys.keys}),
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": list(SUPPORTED_SCOPES),
        "claims_supported": [
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "role",
            "district",
            "product",
            "name",
            "given_name",
            "family_name",
        ],
        "authorization_response_iss_parameter_supported": True,
    }


@router.get("/jwks.json")
async def jwks(request: Request) -> dict[str, Any]:
    return gateway(request).keys.jwks()


def _error_redirect(
    redirect_uri: str, error: str, description: str, state: str | None, issuer: str
) -> Response:
    params = {"error": error, "error_description": description, "iss": issuer}
    if state:
        params["state"] = state
    return RedirectResponse(add_query(redirect_uri, params), status_code=303)


@dataclass(frozen=True)
class AuthorizeError:
    """A refused authorize request. `redirect`: the client and redirect URI are known-good, so the error
    goes back to the client (RFC 6749 §4.1.2.1); otherwise a page, and nothing redirects anywhere."""

    error: str
    description: str
    redirect: bool = True


def check_authorize(
    q: Mapping[str, str], registered: RegisteredClient | None
) -> PendingAuthorize | AuthorizeError:
    """The authorize request's checks, pure: the pending request to keep, or why not."""
    redirect_uri = q.get("redirect_uri", "")
    # no open redirector: `//evil`, `/\evil`, `javascript:` and encodings never match exactly
    if registered is None or redirect_uri not in registered.config.redirect_uris:
        return AuthorizeError("invalid_request", "client or redirect_uri", redirect=False)
    client = registered.config
    state = q.get("state")
    if q.get("response_type") != "code":
        return AuthorizeError("unsupported_response_type", "Only code.")
    scopes = q.get("scope", "").split()
    if "openid" not in scopes:
        return AuthorizeError("invalid_scope", "The openid scope is required.")
    if not state or len(state) > 512:
        return AuthorizeError("invalid_request", "state is required.")
    challenge, method = q.get("code_challenge"), q.get("code_challenge_method")
    if challenge is not None or method is not None:
        if method != "S256" or not challenge or not PKCE_RE.match(challenge):
            return AuthorizeError("invalid_request", "PKCE needs code_challenge_method=S256.")
    elif client.is_public or client.require_pkce:
        return AuthorizeError("invalid_request", "PKCE (S256) is required.")
    nonce = q.get("nonce")
    if nonce is not None and len(nonce) > 512:
        return AuthorizeError("invalid_request", "nonce is too long.")
    return PendingAuthorize(
        client_id=client.client_id,
        product=registered.product,
        redirect_uri=redirect_uri,
        state=state,
        nonce=nonce,
        scope=" ".join(s for s in SUPPORTED_SCOPES if s in scopes),
        code_challenge=challenge,
    )


@router.get("/authorize", response_model=None)
async def authorize(request: Request) -> Response:
    gw = gateway(request)
    q = request.query_params
    registered = gw.clients.get(q.get("client_id", ""))
    checked = check_authorize(q, registered)
    if isinstance(checked, AuthorizeError):
        if not checked.redirect or registered is None:
            log.info("authorize refused", extra={"fields": {"reason": "client or redirect_uri"}})
            name = gw.products[registered.product].display_name if registered else "Login"
            return pages.problem_page(Failure.BAD_REQUEST, product_name=name, retry_url=None)
        return _error_redirect(
            q.get("redirect_uri", ""), checked.error, checked.description, q.get("state"), gw.issuer
        )
    pending = checked
    prompt = q.get("prompt", "").split()
    console = registered is not None and registered.config.console
    live = await load_session(gw, request)
    # a console session is never handed to a product's client, nor a product session to the console
    same_kind = live is not None and live[1].product == pending.product and live[1].console == console
    if live is not None and same_kind and "login" not in prompt:
        max_age = q.get("max_age")
        fresh = not (max_age and max_age.isdigit() and live[1].auth_time + int(max_age) < gw.now())
        if fresh and await still_entitled(gw, live[0], live[1]):
            return RedirectResponse(await issue_code(gw, pending, live[0], live[1]), status_code=303)
    if "none" in prompt:
        return _error_redirect(
            pending.redirect_uri, "login_required", "No session.", pending.state, gw.issuer
        )
    pending_id = new_secret()
    await gw.records.put(ref(pending_id), pending, gw.settings.state_seconds)
    at = ProductContext(pending.product, gw.products[pending.product])
    return await begin(gw, request, at, pending=pending_id, initiated="frontend", console=console)


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Basic realm="sso-gateway"'} if status == 401 else None
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers=headers
    )


def _authenticate_client(gw: Gateway, request: Request, form: dict[str, str]) -> RegisteredClient | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        if "client_secret" in form:
            return None  # one authentication method per request (RFC 6749 §2.3)
        try:
            raw = base64.b64decode(header[6:], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        client_id, sep, secret = raw.partition(":")
        if not sep:
            return None
        client_id, secret = unquote(client_id), unquote(secret)
    else:
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
    registered = gw.clients.get(client_id)
    if registered is None:
        return None
    expected = registered.config.client_secret
    if expected is None:
        return registered if not secret else None
    return registered if secret and hmac.compare_digest(expected.get_secret_value(), secret) else None


@dataclass(frozen=True)
class TokenError:
    status: int
    error: str
    description: str


INVALID_CODE = TokenError(400, "invalid_grant", "The code is invalid, expired or already used.")


def check_token_request(
    form: Mapping[str, str], client: RegisteredClient, grant: CodeGrant, now: float
) -> TokenError | None:
    """The token request's checks against the code's grant, pure (RFC 6749 §4.1.3, RFC 7636 §4.6)."""
    if grant.expires < now:
        return INVALID_CODE
    if grant.client_id != client.config.client_id:
        return TokenError(400, "invalid_grant", "The code was issued to another client.")
    if form.get("redirect_uri") != grant.redirect_uri:
        return TokenError(400, "invalid_grant", "redirect_uri does not match the authorize request.")
    if grant.code_challenge:
        if not pkce_matches(form.get("code_verifier", ""), grant.code_challenge):
            return TokenError(400, "invalid_grant", "PKCE verification failed.")
    elif form.get("code_verifier"):
        return TokenError(400, "invalid_grant", "No PKCE challenge was sent for this code.")
    return None


def _token_error(error: TokenError) -> JSONResponse:
    return _oauth_error(error.status, error.error, error.description)


def _product_claim(session: SessionRecord) -> str:
    """`console` for a district console login, so no product frontend mistakes it for its own."""
    return "console" if session.console else session.product.value


@router.post("/token", response_model=None)
async def token(request: Request) -> Response:
    gw = gateway(request)
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    registered = _authenticate_client(gw, request, form)
    if registered is None:
        return _oauth_error(401, "invalid_client", "Client authentication failed.")
    if form.get("grant_type") != "authorization_code":
        return _oauth_error(400, "unsupported_grant_type", "Only authorization_code.")
    code = form.get("code", "")
    code_ref = ref(code)
    grant = await gw.records.pop(CodeGrant, code_ref) if code else None
    if grant is None:
        used = await gw.records.get(UsedCode, code_ref) if code else None
        if used is not None:
            # a second redemption revokes what the first one issued (RFC 6749 §4.1.2)
            await gw.records.delete(AccessGrant, used.at)
            log.info(
                "code replay: tokens revoked", extra={"fields": {"client_id": registered.config.client_id}}
            )
        return _token_error(INVALID_CODE)
    refused = check_token_request(form, registered, grant, gw.now())
    if refused is not None:
        return _token_error(refused)
    session = await gw.records.get(SessionRecord, grant.sid)
    if session is None:
        return _oauth_error(400, "invalid_grant", "The login session has ended.")
    now = int(gw.now())
    access_token = new_secret()
    at_ref = ref(access_token)
    access = AccessGrant(sid=grant.sid, client_id=grant.client_id, scope=grant.scope, sub=session.sub)
    await gw.records.put(at_ref, access, gw.settings.access_token_seconds)
    await gw.records.put(code_ref, UsedCode(at=at_ref), 600)
    claims: dict[str, Any] = {
        "iss": gw.issuer,
        "sub": session.sub,
        "aud": grant.client_id,
        "iat": now,
        "exp": now + gw.settings.id_token_seconds,
        "auth_time": grant.auth_time,
        "role": session.role,
        "district": session.district,
        "product": _product_claim(session),
    }
    if grant.nonce:
        claims["nonce"] = grant.nonce
    body = {
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": gw.settings.access_token_seconds,
        "scope": grant.scope,
        "id_token": gw.keys.sign(claims),
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


@router.api_route("/userinfo", methods=["GET", "POST"], response_model=None)
async def userinfo(request: Request) -> Response:
    gw = gateway(request)
    header = request.headers.get("authorization", "")
    token_value = header[7:].strip() if header.lower().startswith("bearer ") else ""
    grant = await gw.records.get(AccessGrant, ref(token_value)) if token_value else None
    session = await gw.records.get(SessionRecord, grant.sid) if grant else None
    if grant is None or session is None:
        return JSONResponse(
            {"error": "invalid_token", "error_description": "The access token is invalid or expired."},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    claims = {
        "sub": session.sub,
        "role": session.role,
        "district": session.district,
        "product": _product_claim(session),
    }
    if "profile" in grant.scope.split():
        claims.update(
            {
                "name": session.display_name,
                "given_name": session.given_name,
                "family_name": session.family_name,
            }
        )
    return JSONResponse(claims)


def _hint_claims(gw: Gateway, hint: str | None) -> dict[str, Any] | None:
    if not hint:
        return None
    try:
        claims = gw.keys.verify(hint)  # an expired hint is still a valid hint (OIDC RP-initiated logout)
    except Exception:  # any malformed or forged token is just "no hint"
        return None
    return claims if claims.get("iss") == gw.issuer else None


def hint_for_client(hint: Mapping[str, Any], client_id: str) -> bool:
    """An ID token's audience is the client it was issued to (a string, or a list holding it)."""
    aud = hint.get("aud")
    return aud == client_id or (isinstance(aud, list) and client_id in aud)


@router.api_route("/logout", methods=["GET", "POST"], response_model=None)
async def logout(request: Request) -> Response:
    """RP-initiated logout. `post_logout_redirect_uri` must match the client's allowlist exactly. Without
    a valid `id_token_hint` a confirmation form (POST with a CSRF token) protects against forced logout."""
    gw = gateway(request)
    params: dict[str, str] = dict(request.query_params)
    if request.method == "POST":
        params.update({k: v for k, v in (await request.form()).items() if isinstance(v, str)})
    hint = _hint_claims(gw, params.get("id_token_hint"))
    client_id = params.get("client_id") or (str(hint["aud"]) if hint else "")
    registered = gw.clients.get(client_id)
    target = params.get("post_logout_redirect_uri")
    name = gw.products[registered.product].display_name if registered else "Login"
    if registered is not None and registered.config.console:
        name = CONSOLE_NAME
    if hint is not None and not hint_for_client(hint, client_id):
        # OIDC RP-Initiated Logout §2: with both, the OP must check that the hint was issued to the client
        log.info("logout refused", extra={"fields": {"reason": "id_token_hint of another client"}})
        return pages.problem_page(Failure.BAD_REQUEST, product_name=name, retry_url=None)
    if target and (registered is None or target not in registered.config.post_logout_redirect_uris):
        return pages.problem_page(Failure.BAD_REQUEST, product_name=name, retry_url=None)
    browser, new_browser = browser_id(gw, request)
    csrf_ok = (
        request.method == "POST"
        and not new_browser
        and hmac.compare_digest(params.get("csrf", ""), digest("csrf:" + browser))
    )
    live = await load_session(gw, request)
    hint_ok = hint is not None and (live is None or live[1].sub == hint.get("sub"))
    if not (csrf_ok or hint_ok):
        carry = [(k, params[k]) for k in ("post_logout_redirect_uri", "state", "client_id") if k in params]
        if hint is not None and "client_id" not in params:
            carry.append(("client_id", client_id))
        page = pages.render(
            "logout.html",
            title="Log out",
            product_name=name,
            done=False,
            csrf=digest("csrf:" + browser),
            carry=carry,
        )
        if new_browser:
            gw.cookies.set(page, gw.cookies.browser, browser)
        return page
    response: Response
    if target:
        extra = {"state": params["state"]} if params.get("state") else {}
        response = RedirectResponse(add_query(target, extra) if extra else target, status_code=303)
    else:
        response = pages.render("logout.html", title="Logged out", product_name=name, done=True)
    await end_session(gw, request, response)
    if live is not None:
        log.info("logout", extra={"fields": {"product": live[1].product.value}})
    return response
