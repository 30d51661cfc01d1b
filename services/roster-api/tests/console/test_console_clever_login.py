""" "Log in with Clever" on the console's side, against a stand-in gateway (httpx.MockTransport) that
signs ID tokens with its own key: the happy path lands in the district's console; a bad state, a bad
nonce, a token issued to another client, a product's token or a missing flow cookie are refused on the
sign-in page with no session; nothing secret reaches the log."""

from __future__ import annotations

import html
import json
import logging
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import ECKey
from pydantic import SecretStr

from roster_api.db import session_scope
from roster_api.main import create_app
from roster_api.models import District
from roster_api.settings import Settings

from .helpers import csrf_of

ISSUER = "https://sso.test"
CLIENT_ID = "district-console"
SECRET = "console-client-secret-0123456789"
ADMIN = "clever:5787451bd72145af07002290"
CLEVER_DISTRICT = "6202763c8243d2100123dae5"


@pytest.fixture
def database_url(sqlite_template: Path, tmp_path: Path) -> str:
    """SQLite only: the callback reads one district row; the token checks involve no database (the
    whole login runs on both databases in tests/test_e2e_console_login.py)."""
    path = tmp_path / "roster.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@dataclass
class FakeGateway:
    """The gateway's discovery, JWKS and token endpoints; the test decides the ID token's claims."""

    key: ECKey = field(default_factory=lambda: ECKey.generate_key("P-256", private=True))
    claims: dict[str, Any] = field(default_factory=dict)
    token_forms: list[dict[str, str]] = field(default_factory=list)

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/.well-known/openid-configuration":
            return httpx.Response(
                200,
                json={
                    "issuer": ISSUER,
                    "authorization_endpoint": f"{ISSUER}/authorize",
                    "token_endpoint": f"{ISSUER}/token",
                    "jwks_uri": f"{ISSUER}/jwks.json",
                },
            )
        if path == "/jwks.json":
            return httpx.Response(200, json={"keys": [self.key.as_dict(private=False, kid="k1")]})
        if path == "/token":
            self.token_forms.append({k: v[0] for k, v in parse_qs(request.content.decode()).items()})
            id_token = jwt.encode({"alg": "ES256", "kid": "k1"}, self.claims, self.key)
            body = {"access_token": "at-secret", "token_type": "Bearer", "id_token": id_token}
            return httpx.Response(200, json=body)
        return httpx.Response(404)


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway()


@pytest.fixture
def client(roster_settings: Settings, gateway: FakeGateway, make_key: Any) -> Iterator[TestClient]:
    settings = roster_settings.model_copy(
        update={
            "console_oidc_issuer": ISSUER,
            "console_oidc_client_id": CLIENT_ID,
            "console_oidc_client_secret": SecretStr(SECRET),
            "console_oidc_redirect_uri": "http://testserver/console/auth/callback",
        }
    )
    app = create_app(settings)
    app.state.console_oidc_transport = httpx.MockTransport(gateway.handler)
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as c:
        headers = {"Authorization": f"Bearer {make_key('admin', name='setup')}"}
        for district_id in ("d1", "d2"):
            body: dict[str, Any] = {"id": district_id, "name": f"District {district_id}", "licenses": {}}
            body["clever_district_id"] = CLEVER_DISTRICT if district_id == "d1" else None
            assert c.post("/v1/districts", json=body, headers=headers).status_code == 201
        yield c


def start(client: TestClient, gateway: FakeGateway, **claims: Any) -> dict[str, str]:
    """Start a sign-in; the stand-in gateway will answer with an ID token for that very sign-in
    (this client, the nonce sent), changed by `claims`. Returns the authorize request's parameters."""
    response = client.get("/console/login/clever")
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith(f"{ISSUER}/authorize?")
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    now = int(time.time())
    gateway.claims = {
        "iss": ISSUER,
        "sub": ADMIN,
        "aud": CLIENT_ID,
        "iat": now,
        "exp": now + 300,
        "nonce": query["nonce"],
        "role": "district_admin",
        "district": "d1",
        "product": "console",
        **claims,
    }
    return query


def test_the_button_is_shown_only_when_configured(client: TestClient, browser: TestClient) -> None:
    assert 'id="clever-login"' in client.get("/console/login").text
    assert 'id="clever-login"' not in browser.get("/console/login").text
    assert browser.get("/console/login/clever").headers["location"] == "/console/login"


def test_a_district_admin_lands_in_their_district(
    client: TestClient, gateway: FakeGateway, caplog: pytest.LogCaptureFixture, roster_engine: sa.Engine
) -> None:
    engine = roster_engine
    caplog.set_level(logging.DEBUG)
    query = start(client, gateway)
    assert (query["client_id"], query["response_type"], query["code_challenge_method"]) == (
        CLIENT_ID,
        "code",
        "S256",
    )
    assert set(query) >= {"state", "nonce", "code_challenge", "redirect_uri", "scope"}
    back = client.get("/console/auth/callback", params={"code": "the-code", "state": query["state"]})
    assert back.status_code == 303, back.text
    assert back.headers["location"] == "/console/"
    form = gateway.token_forms[0]
    assert (form["code"], form["grant_type"]) == ("the-code", "authorization_code")
    assert len(form["code_verifier"]) >= 43
    assert client.get("/console/").headers["location"] == "/console/d/d1"
    assert client.get("/console/d/d1").status_code == 200
    assert client.get("/console/d/d2").status_code == 404
    assert client.get("/console/districts").status_code == 403
    logged = "\n".join(r.getMessage() + json.dumps(getattr(r, "fields", {})) for r in caplog.records)
    for secret in ("the-code", "at-secret", form["code_verifier"], query["state"], query["nonce"]):
        assert secret not in logged
    # the session ends when support unlinks the district from Clever
    with session_scope(engine) as s:
        district = s.get(District, "d1")
        assert district is not None
        district.clever_district_id = None
    assert client.get("/console/d/d1").headers["location"] == "/console/login"
    # the flow is single use: the same callback again has no flow cookie left
    again = client.get("/console/auth/callback", params={"code": "the-code", "state": query["state"]})
    assert again.status_code == 400


@pytest.mark.parametrize(
    ("case", "claims", "status"),
    [
        ("bad nonce", {"nonce": "not-the-one-sent"}, 400),
        ("another client's token", {"aud": "rocketlit-web"}, 400),
        ("another issuer", {"iss": "https://evil.test"}, 400),
        ("expired", {"exp": int(time.time()) - 3600}, 400),
        ("a product login", {"product": "rocketlit", "sub": "acct_123"}, 403),
        ("an unknown district", {"district": "nowhere"}, 403),
    ],
)
def test_a_token_that_does_not_fit_is_refused(
    client: TestClient, gateway: FakeGateway, case: str, claims: dict[str, Any], status: int
) -> None:
    query = start(client, gateway, **claims)
    back = client.get("/console/auth/callback", params={"code": "c", "state": query["state"]})
    assert back.status_code == status, case
    assert 'role="alert"' in back.text
    assert client.get("/console/").headers["location"] == "/console/login"


def test_sign_out_offers_to_end_the_gateway_session(client: TestClient, gateway: FakeGateway) -> None:
    query = start(client, gateway)
    client.get("/console/auth/callback", params={"code": "c", "state": query["state"]})
    token = csrf_of(client.get("/console/d/d1").text)
    out = client.post("/console/logout", data={"csrf_token": token})
    assert out.status_code == 303
    page = client.get(out.headers["location"])
    link = re.search(r'id="gateway-logout" href="([^"]+)"', page.text)
    assert link is not None
    target = html.unescape(link[1])
    assert target.startswith(f"{ISSUER}/logout?")
    params = {k: v[0] for k, v in parse_qs(urlsplit(target).query).items()}
    assert params == {
        "client_id": CLIENT_ID,
        "post_logout_redirect_uri": "http://testserver/console/login",
    }
    assert 'id="gateway-logout"' not in client.get("/console/login").text


def test_a_bad_state_is_refused_before_the_code_is_redeemed(client: TestClient, gateway: FakeGateway) -> None:
    start(client, gateway)
    back = client.get("/console/auth/callback", params={"code": "c", "state": "forged"})
    assert back.status_code == 400
    assert "Please sign in again" in back.text
    assert gateway.token_forms == []
    assert client.get("/console/").headers["location"] == "/console/login"


def test_a_callback_without_the_flow_cookie_is_refused(client: TestClient, gateway: FakeGateway) -> None:
    query = start(client, gateway)
    client.cookies.clear()
    back = client.get("/console/auth/callback", params={"code": "c", "state": query["state"]})
    assert back.status_code == 400
    assert gateway.token_forms == []


def test_a_refusal_at_the_gateway_is_shown(client: TestClient, gateway: FakeGateway) -> None:
    query = start(client, gateway)
    back = client.get("/console/auth/callback", params={"error": "access_denied", "state": query["state"]})
    assert back.status_code == 400
    assert "cancelled or refused" in back.text
