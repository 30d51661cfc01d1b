"""The simulator's HTTP surface: Clever's endpoints and JSON shapes plus `/sim/*` to seed it.

Behaviour copied from Clever: codes are single use and valid 60 s (reuse -> 400), the token endpoint
wants HTTP Basic client auth and the same redirect_uri, tokens are opaque, SSO tokens read only /me,
/users/{own id} and /districts/{own district}, Clever-initiated logins (portal, Instant Login) arrive at
the app's FIRST redirect URI with a code and no state. Like Clever, it keeps its own login session in a
cookie, so a relying party restarting at /oauth/authorize comes straight back with a fresh code."""

from __future__ import annotations

import base64
import binascii
import html
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from clever_sim.seed import ROLES, Seed, SimApp, SimUser, load_roster

CODE_SECONDS = 60.0
SESSION_COOKIE = "clever_sim_session"
SCOPES = "read:user_id read:sis"


@dataclass
class CodeGrant:
    user_id: str
    client_id: str
    redirect_uri: str
    expires_at: float
    used: bool = False


@dataclass
class Faults:
    """Failure modes switched on from tests or `/sim/faults`."""

    token_status: int | None = None  # answer /oauth/tokens with this status
    api_status: int | None = None  # answer /v3.0/* and /userinfo with this status
    authorize_error: str | None = None  # e.g. "access_denied": every authorize ends with this error


class SimState:
    def __init__(self, seed: Seed, clock: Callable[[], float] = time.time) -> None:
        self.seed = seed
        self.clock = clock
        self.codes: dict[str, CodeGrant] = {}
        self.tokens: dict[str, tuple[str, str]] = {}  # access token -> (user id, client id)
        self.sessions: dict[str, str] = {}  # clever session cookie -> user id
        self.faults = Faults()
        self.token_calls: list[str] = []  # codes presented to /oauth/tokens, for tests

    def issue_code(self, user_id: str, client_id: str, redirect_uri: str) -> str:
        code = secrets.token_hex(20)  # Clever's codes are 40 hex characters
        self.codes[code] = CodeGrant(user_id, client_id, redirect_uri, self.clock() + CODE_SECONDS)
        return code


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:46rem;margin:2rem auto}li{margin:.4rem 0}"
        ".who{color:#555}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}<p class='who'>Clever simulator (not clever.com)</p>"
        "</body></html>",
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


def _redirect(url: str, params: dict[str, str]) -> RedirectResponse:
    sep = "&" if "?" in url else "?"
    return RedirectResponse(url + sep + urlencode(params), status_code=302)


def create_app(seed: Seed | None = None, *, clock: Callable[[], float] = time.time) -> FastAPI:
    state = SimState(seed or Seed(), clock)
    app = FastAPI(title="Clever simulator", version="0.1.0")
    app.state.sim = state

    def session_user(request: Request) -> SimUser | None:
        user_id = state.sessions.get(request.cookies.get(SESSION_COOKIE, ""))
        return state.seed.users.get(user_id) if user_id else None

    def sign_in(response: Response, user: SimUser) -> None:
        sid = secrets.token_urlsafe(24)
        state.sessions[sid] = user.id
        response.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="lax")

    def user_picker(request: Request, district_id: str | None, hint: str) -> HTMLResponse:
        users = [u for u in state.seed.users.values() if not district_id or u.district == district_id]
        users.sort(key=lambda u: (u.district, u.role, u.last_name, u.first_name))
        items = []
        for user in users:
            params = dict(request.query_params)
            params["login_as"] = user.id
            label = f"{user.first_name} {user.last_name} ({user.role}"
            label += f", {user.email})" if user.email else ")"
            district = state.seed.districts[user.district].name
            items.append(
                f"<li><a href='{html.escape(request.url.path + '?' + urlencode(params))}'>"
                f"{html.escape(label)}</a> <span class='who'>{html.escape(district)}</span></li>"
            )
        deny = dict(request.query_params)
        deny["deny"] = "1"
        body = (
            f"<p>{html.escape(hint)}</p><ul>{''.join(items) or '<li>No users seeded.</li>'}</ul>"
            f"<p><a href='{html.escape(request.url.path + '?' + urlencode(deny))}'>"
            "Cancel (access_denied)</a></p>"
        )
        return _page("Log in to Clever", body)

    # --- OAuth -------------------------------------------------------------------------------------

    @app.get("/oauth/authorize", response_model=None)
    async def authorize(request: Request) -> Response:
        q = request.query_params
        client = state.seed.apps.get(q.get("client_id", ""))
        if client is None:
            return _page("Unknown application", "<p>client_id is not a registered application.</p>", 400)
        redirect_uri = q.get("redirect_uri") or client.redirect_uris[0]
        if redirect_uri not in client.redirect_uris:
            return _page("Bad redirect_uri", "<p>redirect_uri is not registered for this app.</p>", 400)
        if q.get("response_type") != "code":
            return _redirect(redirect_uri, {"error": "unsupported_response_type"})
        extra = {"state": q["state"]} if "state" in q else {}
        error = (
            state.faults.authorize_error or q.get("sim_error") or ("access_denied" if "deny" in q else None)
        )
        if error:
            return _redirect(
                redirect_uri,
                {"error": error, "error_description": "The user denied the request.", **extra},
            )
        user = state.seed.users.get(q.get("login_as", ""))
        if user is None:
            user = session_user(request)
            if user is None or (q.get("district_id") and user.district != q.get("district_id")):
                return user_picker(request, q.get("district_id"), f"Choose who logs in to {client.name}.")
        code = state.issue_code(user.id, client.client_id, redirect_uri)
        response = _redirect(redirect_uri, {"code": code, "scope": SCOPES, **extra})
        sign_in(response, user)
        return response

    @app.get("/oauth/instant-login", response_model=None)
    async def instant_login(request: Request) -> Response:
        """Clever-initiated: the code goes to the app's first redirect URI and carries no state."""
        q = request.query_params
        client = state.seed.apps.get(q.get("client_id", ""))
        if client is None:
            return _page("Unknown application", "<p>client_id is not a registered application.</p>", 400)
        district_id = q.get("district_id") or None
        user = state.seed.users.get(q.get("login_as", "")) or session_user(request)
        if user is None or (district_id and user.district != district_id):
            return user_picker(request, district_id, f"Choose who logs in to {client.name}.")
        first = client.redirect_uris[0]
        code = state.issue_code(user.id, client.client_id, first)
        response = _redirect(first, {"code": code, "scope": SCOPES})
        sign_in(response, user)
        return response

    @app.post("/oauth/tokens", response_model=None)
    async def tokens(request: Request) -> Response:
        client = _basic_client(request, state.seed)
        if client is None:
            return _oauth_error(401, "invalid_client", "HTTP Basic client authentication is required.")
        if state.faults.token_status:
            return _oauth_error(state.faults.token_status, "server_error", "Simulated failure.")
        body = await _body(request)
        code = str(body.get("code", ""))
        state.token_calls.append(code)
        if body.get("grant_type") != "authorization_code":
            return _oauth_error(400, "unsupported_grant_type", "Only authorization_code is supported.")
        grant = state.codes.get(code)
        if grant is None or grant.client_id != client.client_id:
            return _oauth_error(400, "invalid_grant", "Unknown code.")
        if grant.used:
            return _oauth_error(400, "invalid_grant", "This code has already been used.")
        grant.used = True
        if grant.expires_at < state.clock():
            return _oauth_error(400, "invalid_grant", "This code has expired.")
        if body.get("redirect_uri") != grant.redirect_uri:
            return _oauth_error(400, "invalid_grant", "redirect_uri does not match the authorize request.")
        token = secrets.token_urlsafe(30)
        state.tokens[token] = (grant.user_id, client.client_id)
        return JSONResponse({"access_token": token, "token_type": "bearer"})

    # --- API ---------------------------------------------------------------------------------------

    def bearer_user(request: Request) -> SimUser | JSONResponse:
        if state.faults.api_status:
            return JSONResponse({"error": "Simulated failure."}, status_code=state.faults.api_status)
        auth = request.headers.get("authorization", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else ""
        entry = state.tokens.get(token)
        user = state.seed.users.get(entry[0]) if entry else None
        if user is None:
            return JSONResponse({"error": "Unauthorized"}, status_code=401)
        return user

    @app.get("/v3.0/me", response_model=None)
    async def me(request: Request) -> Response:
        user = bearer_user(request)
        if isinstance(user, JSONResponse):
            return user
        return JSONResponse(
            {
                "type": "user",
                "data": {
                    "id": user.id,
                    "district": user.district,
                    "type": "user",
                    "authorized_by": "district",
                },
                "links": [
                    {"rel": "self", "uri": "/me"},
                    {"rel": "canonical", "uri": f"/v3.0/users/{user.id}"},
                    {"rel": "district", "uri": f"/v3.0/districts/{user.district}"},
                ],
            }
        )

    @app.get("/v3.0/users/{user_id}", response_model=None)
    async def get_user(user_id: str, request: Request) -> Response:
        user = bearer_user(request)
        if isinstance(user, JSONResponse):
            return user
        if user_id != user.id:
            return JSONResponse({"error": "Resource not in token's scopes"}, status_code=403)
        return JSONResponse({"data": _user_record(user), "links": [{"rel": "self", "uri": request.url.path}]})

    @app.get("/v3.0/districts/{district_id}", response_model=None)
    async def get_district(district_id: str, request: Request) -> Response:
        user = bearer_user(request)
        if isinstance(user, JSONResponse):
            return user
        if district_id != user.district:
            return JSONResponse({"error": "Resource not in token's scopes"}, status_code=403)
        district = state.seed.districts[district_id]
        return JSONResponse({"data": {"id": district.id, "name": district.name}})

    @app.get("/userinfo", response_model=None)
    async def userinfo(request: Request) -> Response:
        user = bearer_user(request)
        if isinstance(user, JSONResponse):
            return user
        return JSONResponse(
            {
                "sub": user.id,
                "user_id": user.id,
                "multi_role_user_id": user.id,
                "user_type": user.role.replace("_", " "),
                "district_id": user.district,
                "district": user.district,
                "email": user.email,
                "name": {"first": user.first_name, "last": user.last_name, "middle": ""},
                "given_name": user.first_name,
                "family_name": user.last_name,
                "email_verified": False,
                "authorized_by": "district",
            }
        )

    # --- portal ------------------------------------------------------------------------------------

    @app.get("/portal", response_model=None)
    async def portal(request: Request) -> Response:
        user = state.seed.users.get(request.query_params.get("login_as", "")) or session_user(request)
        if user is None:
            return user_picker(
                request, request.query_params.get("district_id"), "Log in to your Clever portal."
            )
        icons = "".join(
            f"<li><a href='/portal/launch/{html.escape(a.client_id)}'>{html.escape(a.name)}</a></li>"
            for a in state.seed.apps.values()
        )
        response = _page(f"Clever portal: {user.first_name} {user.last_name}", f"<ul>{icons}</ul>")
        if "login_as" in request.query_params:
            sign_in(response, user)
        return response

    @app.get("/portal/launch/{client_id}", response_model=None)
    async def portal_launch(client_id: str, request: Request) -> Response:
        user = session_user(request)
        client = state.seed.apps.get(client_id)
        if user is None or client is None:
            return RedirectResponse("/portal", status_code=302)
        first = client.redirect_uris[0]
        return _redirect(first, {"code": state.issue_code(user.id, client.client_id, first), "scope": SCOPES})

    @app.get("/logout", response_model=None)
    async def logout(request: Request) -> Response:
        state.sessions.pop(request.cookies.get(SESSION_COOKIE, ""), None)
        response = _page("Logged out of Clever", "<p><a href='/portal'>Portal</a></p>")
        response.delete_cookie(SESSION_COOKIE)
        return response

    # --- seeding (development only) ----------------------------------------------------------------

    @app.get("/sim/users")
    async def list_users() -> list[dict[str, Any]]:
        return [u.public() for u in state.seed.users.values()]

    @app.post("/sim/users", status_code=201, response_model=None)
    async def add_user(request: Request) -> Response:
        """Adds a user Clever knows but the roster may not (the failure demo)."""
        body = await _body(request)
        try:
            user = state.seed.add_user(
                SimUser(
                    id=str(body["id"]),
                    district=str(body["district"]),
                    role=str(body.get("role", "student")),
                    first_name=str(body.get("first_name", "")),
                    last_name=str(body.get("last_name", "")),
                    email=body.get("email"),
                    grade=body.get("grade"),
                    sis_id=str(body["sis_id"]) if body.get("sis_id") else None,
                )
            )
        except (KeyError, ValueError) as exc:
            return JSONResponse({"error": f"bad user: {exc}; roles: {', '.join(ROLES)}"}, status_code=400)
        return JSONResponse(user.public(), status_code=201)

    @app.post("/sim/districts/{district_id}/roster", response_model=None)
    async def add_roster(district_id: str, request: Request) -> Response:
        """Body: the roster CSV. `?name=` names the district."""
        try:
            count = load_roster(
                state.seed,
                (await request.body()).decode("utf-8-sig"),
                district_id=district_id,
                district_name=request.query_params.get("name", district_id),
            )
        except (ValueError, UnicodeDecodeError) as exc:
            return JSONResponse({"error": f"bad roster: {exc}"}, status_code=400)
        return JSONResponse({"district": district_id, "users": count})

    @app.post("/sim/apps", status_code=201, response_model=None)
    async def add_app(request: Request) -> Response:
        body = await _body(request)
        try:
            app_ = state.seed.add_app(
                SimApp(
                    client_id=str(body["client_id"]),
                    client_secret=str(body["client_secret"]),
                    redirect_uris=[str(u) for u in body["redirect_uris"]],
                    name=str(body.get("name", body["client_id"])),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            return JSONResponse({"error": f"bad app: {exc}"}, status_code=400)
        return JSONResponse({"client_id": app_.client_id}, status_code=201)

    @app.put("/sim/faults")
    async def set_faults(request: Request) -> dict[str, Any]:
        body = await _body(request)
        state.faults = Faults(
            token_status=body.get("token_status"),
            api_status=body.get("api_status"),
            authorize_error=body.get("authorize_error"),
        )
        return body

    @app.get("/", response_model=None)
    async def index() -> Response:
        return _page(
            "Clever simulator",
            "<ul><li><a href='/portal'>Portal</a></li>"
            "<li><a href='/sim/users'>Seeded users (JSON)</a></li></ul>",
        )

    return app


def _user_record(user: SimUser) -> dict[str, Any]:
    role: dict[str, Any] = {"schools": user.schools}
    if user.sis_id:  # the district's own id: only for users whose roster gave them one
        role["sis_id"] = user.sis_id
    if user.schools:
        role["school"] = user.schools[0]
    if user.role == "student":
        role.update({"student_number": user.sis_id or "", "grade": user.grade or ""})
    elif user.role == "teacher":
        role.update({"teacher_number": user.sis_id or "", "district": user.district})
    record: dict[str, Any] = {
        "id": user.id,
        "district": user.district,
        "name": {"first": user.first_name, "last": user.last_name},
        "created": "2024-08-01T00:00:00.000Z",
        "last_modified": "2024-08-01T00:00:00.000Z",
        "roles": {user.role: role},
    }
    if user.email:  # "Not Guaranteed": absent, as Clever does, when there is none
        record["email"] = user.email
    return record


def _basic_client(request: Request, seed: Seed) -> SimApp | None:
    auth = request.headers.get("authorization", "")
    if not auth.lower().startswith("basic "):
        return None
    try:
        client_id, _, secret = base64.b64decode(auth[6:], validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client = seed.apps.get(client_id)
    if client is None or not secrets.compare_digest(client.client_secret, secret):
        return None
    return client


async def _body(request: Request) -> dict[str, Any]:
    """Clever accepts JSON or form bodies."""
    raw = await request.body()
    # JSON when declared, or when it plainly is (`curl -d '{...}'` sends it as a form)
    if request.headers.get("content-type", "").startswith("application/json") or raw.lstrip()[:1] == b"{":
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}
