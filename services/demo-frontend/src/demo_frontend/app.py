"""The demo product frontend: a plain OpenID Connect relying party of sso-gateway, built with Authlib's
Starlette client the way RocketLit's or InnerOrbit's real frontend would be.

- `/` shows who is logged in (name, role, school, district, product) or a "Log in with Clever" button.
- `/login` starts the code flow (state, nonce, PKCE S256). It is also the OIDC third-party-initiated login
  URI: after a Clever portal or Instant Login, the gateway sends the browser here with `?iss=`.
- `/auth/callback` redeems the code, checks the ID token (signature from the JWKS, issuer, audience, nonce)
  and reads `/userinfo` for the name.
- `POST /logout` ends the local session and the gateway's (RP-initiated logout).
"""

from __future__ import annotations

import html
import logging
import warnings
from typing import Any
from urllib.parse import urlencode

# Authlib 1.9 warns on import that it prefers the `httpx2` package; httpx is what this stack pins. Its
# deprecate module installs an "always" filter when imported, so ours goes in front of it, for this import.
import authlib.deprecate  # noqa: F401
import httpx
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.middleware.sessions import SessionMiddleware

from demo_frontend.settings import Product, Settings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="The httpx module is deprecated")
    from authlib.integrations.base_client.errors import OAuthError
    from authlib.integrations.starlette_client import OAuth

log = logging.getLogger("demo_frontend")

THEMES = {
    Product.ROCKETLIT: ("#c2410c", "#fff7ed", "Reading that takes off."),
    Product.INNERORBIT: ("#6d28d9", "#f5f3ff", "Science from the inside out."),
}
ROLE_NAMES = {"student": "Student", "teacher": "Teacher"}


def _page(settings: Settings, title: str, body: str, status: int = 200) -> HTMLResponse:
    accent, background, tagline = THEMES[settings.product]
    name = html.escape(settings.display_name)
    return HTMLResponse(
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)} · {name}</title><style>"
        f"body{{font-family:system-ui,sans-serif;margin:0;background:{background};color:#1f2937}}"
        f"header{{background:{accent};color:#fff;padding:1rem 2rem}}header h1{{margin:0;font-size:1.6rem}}"
        "header p{margin:.2rem 0 0;opacity:.85}main{max-width:40rem;margin:2rem auto;padding:0 1rem}"
        ".card{background:#fff;border-radius:.6rem;padding:1.5rem;box-shadow:0 1px 4px #0002}"
        "dl{display:grid;grid-template-columns:8rem 1fr;gap:.5rem 1rem}dt{font-weight:600;color:#555}"
        "dd{margin:0}"
        f".button{{display:inline-block;background:{accent};color:#fff;border:0;border-radius:.4rem;"
        "padding:.7rem 1.2rem;font-size:1rem;text-decoration:none;cursor:pointer}"
        ".error{color:#991b1b}</style></head><body>"
        f"<header><h1>{name}</h1><p>{html.escape(tagline)}</p></header>"
        f"<main><div class='card'>{body}</div></main></body></html>",
        status_code=status,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


async def _school_names(settings: Settings, claims: dict[str, Any]) -> list[str]:
    """The user's schools, from roster-api with the demo's read key. ID tokens carry ids and the role
    only (no roster data, by design), so a product finds everything else in its own copy of the roster;
    this demo asks roster-api instead: account -> person -> schools."""
    if not settings.roster_api_url or settings.roster_api_key is None:
        return []
    district, account_id = str(claims.get("district", "")), str(claims.get("sub", ""))
    role = "teacher" if claims.get("role") == "teacher" else "student"
    headers = {"Authorization": f"Bearer {settings.roster_api_key.get_secret_value()}"}
    base = f"/v1/districts/{district}"
    roster = httpx.AsyncClient(base_url=settings.roster_api_url, headers=headers, timeout=3.0)
    try:
        async with roster as client:
            person_id = None
            for offset in range(0, 20 * 500, 500):
                params: dict[str, str | int] = {
                    "product": settings.product.value,
                    "role": role,
                    "limit": 500,
                    "offset": offset,
                }
                page = (await client.get(f"{base}/accounts", params=params)).raise_for_status().json()
                match = [a for a in page["items"] if a["account_id"] == account_id]
                if match or offset + 500 >= page["total"]:
                    person_id = match[0]["person_id"] if match else None
                    break
            if person_id is None:
                return []
            person = (await client.get(f"{base}/{role}s/{person_id}")).raise_for_status().json()
            names = []
            for school_id in person.get("school_ids", []):
                school = await client.get(f"{base}/schools/{school_id}")
                names.append(str(school.json().get("name")) if school.status_code == 200 else school_id)
            return names
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        log.warning("cannot read the roster: %s", type(exc).__name__)
        return []


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(title=f"{settings.display_name} (demo)", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.session_secret.get_secret_value(),
        session_cookie=settings.cookie_name,
        same_site="lax",
        https_only=settings.base_url.startswith("https://"),
        max_age=8 * 3600,
    )
    oauth = OAuth()
    oauth.register(
        name="gateway",
        client_id=settings.client_id,
        client_secret=settings.client_secret.get_secret_value(),
        server_metadata_url=settings.issuer.rstrip("/") + "/.well-known/openid-configuration",
        client_kwargs={
            "scope": "openid profile",
            "code_challenge_method": "S256",
            "token_endpoint_auth_method": "client_secret_basic",
            "timeout": 5.0,
        },
    )
    gateway = oauth.create_client("gateway")
    assert gateway is not None

    def failure(message: str, status: int) -> HTMLResponse:
        body = (
            f"<h2>Login did not complete</h2><p class='error'>{html.escape(message)}</p>"
            "<p><a class='button' href='/login'>Log in with Clever</a></p>"
        )
        return _page(settings, "Login failed", body, status)

    @app.get("/", response_model=None)
    async def home(request: Request) -> Response:
        user: dict[str, Any] | None = request.session.get("user")
        if not user:
            body = (
                f"<h2>Welcome to {html.escape(settings.display_name)}</h2>"
                "<p>Students and teachers sign in with their school's Clever account.</p>"
                "<p><a class='button' id='login' href='/login'>Log in with Clever</a></p>"
            )
            return _page(settings, "Welcome", body)
        rows = [
            ("Name", user.get("name") or "(not shared)", "name"),
            ("Role", ROLE_NAMES.get(user.get("role", ""), user.get("role", "")), "role"),
            ("School", ", ".join(user.get("schools") or []) or "(none on the roster)", "school"),
            ("District", user.get("district", ""), "district"),
            ("Product", user.get("product_name", ""), "product"),
            ("Account", user.get("sub", ""), "account"),
        ]
        items = "".join(
            f"<dt>{html.escape(label)}</dt><dd id='who-{key}'>{html.escape(str(value))}</dd>"
            for label, value, key in rows
        )
        body = (
            f"<h2>You are logged in to {html.escape(settings.display_name)}</h2><dl id='who'>{items}</dl>"
            "<form method='post' action='/logout'><button class='button' id='logout'>Log out</button></form>"
        )
        return _page(settings, "Logged in", body)

    @app.get("/login", response_model=None)
    async def login(request: Request) -> Response:
        # Third-party-initiated login carries the issuer; only ours may start a login here.
        iss = request.query_params.get("iss")
        if iss is not None and iss.rstrip("/") != settings.issuer.rstrip("/"):
            return failure("This login was started by an unknown identity provider.", 400)
        try:
            response: Response = await gateway.authorize_redirect(request, settings.redirect_uri)
        except (httpx.HTTPError, OAuthError, ValueError) as exc:
            log.warning("cannot reach the login service: %s", type(exc).__name__)
            return failure("The login service is not reachable right now. Try again in a minute.", 502)
        return response

    @app.get("/auth/callback", response_model=None)
    async def callback(request: Request) -> Response:
        if request.query_params.get("error"):
            return failure("The login was cancelled or refused. You can try again.", 400)
        try:
            token = await gateway.authorize_access_token(request)
            userinfo = await gateway.userinfo(token=token)
        except OAuthError as exc:
            log.info("login failed: %s", exc.error)
            return failure("The login could not be completed (it may have expired). Please try again.", 400)
        except httpx.HTTPError as exc:
            log.warning("cannot reach the login service: %s", type(exc).__name__)
            return failure("The login service is not reachable right now. Try again in a minute.", 502)
        claims = dict(token.get("userinfo") or {})
        if claims.get("product") != settings.product.value:
            return failure(f"This login is not for {settings.display_name}.", 403)
        request.session.clear()
        request.session["user"] = {
            "sub": claims.get("sub"),
            "name": userinfo.get("name"),
            "role": claims.get("role"),
            "district": claims.get("district"),
            "schools": await _school_names(settings, claims),
            "product": claims.get("product"),
            "product_name": settings.display_name,
        }
        request.session["id_token"] = token.get("id_token")
        return RedirectResponse("/", status_code=303)

    @app.post("/logout", response_model=None)
    async def logout(request: Request) -> Response:
        id_token = request.session.get("id_token")
        request.session.clear()
        try:
            metadata = await gateway.load_server_metadata()
        except httpx.HTTPError:
            return RedirectResponse("/", status_code=303)
        home = settings.base_url.rstrip("/") + "/"
        params = {"client_id": settings.client_id, "post_logout_redirect_uri": home}
        if id_token:
            params["id_token_hint"] = id_token
        return RedirectResponse(f"{metadata['end_session_endpoint']}?{urlencode(params)}", status_code=303)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
