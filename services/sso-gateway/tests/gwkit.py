"""Test kit (the tests import it as `from .gwkit import ...`). The gateway in-process with the Clever
simulator (ASGI) and roster-api (a contract fake over httpx.MockTransport, or the real app through
ASGITransport), driven by a cookie-keeping browser.

Hosts: the gateway is https://sso.test, Clever is https://clever.test (+ https://api.clever.test), roster-api
is https://roster.test, the frontends are https://rocketlit.test and https://innerorbit.test (never served:
the browser stops when it is sent there)."""

from __future__ import annotations

import json
import secrets
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from fastapi import FastAPI
from joserfc.jwk import ECKey

from clever_sim.seed import Seed, SimApp, SimUser
from sso_gateway.settings import Settings

GW = "https://sso.test"
CLEVER = "https://clever.test"
CLEVER_API = "https://api.clever.test"
ROSTER = "https://roster.test"
ROSTER_KEY = "rk_test-resolve-key"

DISTRICT = "6202763c8243d2100123dae5"
STUDENT = "5787451bd72145af0700228b"  # rostered student
TEACHER = "5787451bd72145af0700228c"  # rostered teacher
STUDENT_B = "5787451bd72145af0700228d"  # second rostered student (shared device)
STRANGER = "5787451bd72145af0700228e"  # known to Clever, not to the roster

RL_SECRET = "rocketlit-clever-secret-0123456789"
IO_SECRET = "innerorbit-clever-secret-0123456789"
RL_WEB_SECRET = "rocketlit-web-secret-0123456789"
IO_WEB_SECRET = "innerorbit-web-secret-0123456789"


class FakeClock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def make_seed() -> Seed:
    seed = Seed()
    seed.add_district(DISTRICT, "Springfield USD")
    people = [
        (STUDENT, "student", "Ada", "Lovelace", "ada.lovelace@springfield.example"),
        (TEACHER, "teacher", "Grace", "Hopper", "grace.hopper@springfield.example"),
        (STUDENT_B, "student", "Alan", "Turing", "alan.turing@springfield.example"),
        (STRANGER, "student", "Eve", "Outsider", "eve.outsider@springfield.example"),
    ]
    for user_id, role, first, last, email in people:
        seed.add_user(
            SimUser(user_id, DISTRICT, role, first, last, email, "5" if role == "student" else None)
        )
    seed.add_app(SimApp("clever-rl", RL_SECRET, [f"{GW}/callback/clever/rocketlit"], "RocketLit"))
    seed.add_app(SimApp("clever-io", IO_SECRET, [f"{GW}/callback/clever/innerorbit"], "InnerOrbit"))
    return seed


def gateway_settings(tmp_path: Path, **overrides: Any) -> Settings:
    key = ECKey.generate_key("P-256", private=True).as_pem(private=True).decode()
    values: dict[str, Any] = {
        "environment": "production",
        "issuer": GW,
        "data_dir": tmp_path / "gw",
        "clever_authorize_url": f"{CLEVER}/oauth/authorize",
        "clever_token_url": f"{CLEVER}/oauth/tokens",
        "clever_api_url": CLEVER_API,
        "roster_api_url": ROSTER,
        "roster_api_key": ROSTER_KEY,
        "signing_key": key,
        "rocketlit": {
            "display_name": "RocketLit",
            "clever_client_id": "clever-rl",
            "clever_client_secret": RL_SECRET,
            "clever_redirect_uri": f"{GW}/callback/clever/rocketlit",
            "clients": [
                {
                    "client_id": "rocketlit-web",
                    "client_secret": RL_WEB_SECRET,
                    "redirect_uris": ["https://rocketlit.test/auth/callback"],
                    "post_logout_redirect_uris": ["https://rocketlit.test/logged-out"],
                    "login_initiation_uri": "https://rocketlit.test/auth/login",
                },
                {
                    "client_id": "rocketlit-app",
                    "redirect_uris": ["https://rocketlit.test/app/callback"],
                },
            ],
        },
        "innerorbit": {
            "display_name": "InnerOrbit",
            "clever_client_id": "clever-io",
            "clever_client_secret": IO_SECRET,
            "clever_redirect_uri": f"{GW}/callback/clever/innerorbit",
            "clients": [
                {
                    "client_id": "innerorbit-web",
                    "client_secret": IO_WEB_SECRET,
                    "redirect_uris": ["https://innerorbit.test/oidc/callback"],
                    "post_logout_redirect_uris": ["https://innerorbit.test/"],
                    "login_initiation_uri": "https://innerorbit.test/oidc/login",
                }
            ],
        },
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class FakeRoster:
    """roster-api's resolve contract (shared/contracts.py), for tests that do not need the database."""

    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    down: bool = False
    slow: bool = False  # answers as if the read timed out
    status: int | None = None  # answer every resolve with this status
    calls: list[dict[str, Any]] = field(default_factory=list)

    def handler(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if self.slow:
            raise httpx.ReadTimeout("timed out", request=request)
        if self.status is not None:
            return httpx.Response(
                self.status, json={"error": {"code": "RATE_LIMITED", "message": "slow down"}}
            )
        if request.headers.get("authorization") != f"Bearer {ROSTER_KEY}":
            return httpx.Response(401, json={"error": {"code": "UNAUTHENTICATED", "message": "bad key"}})
        if request.url.path == "/readyz":
            return httpx.Response(200, json={"status": "ready"})
        body = json.loads(request.content)
        self.calls.append(body)
        reference = "LA" + secrets.token_hex(4).upper()
        account = self.accounts.get(body["clever_user_id"])
        if account and account["product"] == body["product"]:
            return httpx.Response(200, json={**account, "reference": reference})
        reason = self.failures.get(body["clever_user_id"], "no_account")
        return httpx.Response(
            422,
            json={
                "error": {
                    "code": reason.upper(),
                    "message": "no account",
                    "details": [{"reason": reason, "reference": reference}],
                }
            },
        )


def account(clever_id: str, product: str) -> dict[str, Any]:
    role = "teacher" if clever_id == TEACHER else "student"
    return {
        "account_id": f"acc_{product[:2]}_{clever_id[-4:]}",
        "product": product,
        "role": role,
        "district_id": "springfield-usd",
        "display_name": {STUDENT: "Ada Lovelace", TEACHER: "Grace Hopper", STUDENT_B: "Alan Turing"}[
            clever_id
        ],
        "school_ids": ["sch-1"],
        "matched_by": "clever_id",
    }


class MultiProductRoster(FakeRoster):
    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/resolve" and not self.down:
            body = json.loads(request.content)
            if body["clever_user_id"] in (STUDENT, TEACHER, STUDENT_B):
                self.accounts[body["clever_user_id"]] = account(body["clever_user_id"], body["product"])
        return super().handler(request)


@dataclass
class Env:
    gateway: FastAPI
    sim: FastAPI
    browser: httpx.AsyncClient
    clock: FakeClock
    settings: Settings
    roster: FakeRoster | None

    @property
    def sim_state(self) -> Any:
        return self.sim.state.sim

    def new_browser(self) -> httpx.AsyncClient:
        return make_browser(self.gateway, self.sim)

    async def follow(
        self, url: str, browser: httpx.AsyncClient | None = None, limit: int = 12
    ) -> httpx.Response:
        """Follows redirects through the gateway and Clever; stops at a page or at a frontend URL."""
        browser = browser or self.browser
        response = await browser.get(url)
        for _ in range(limit):
            if response.status_code not in (301, 302, 303, 307):
                return response
            location = response.headers["location"]
            target = httpx.URL(location) if "://" in location else response.url.join(location)
            if target.host not in ("sso.test", "clever.test"):
                return response
            response = await browser.get(target)
        raise AssertionError("redirect loop")

    async def login_at_clever(self, user_id: str, browser: httpx.AsyncClient | None = None) -> None:
        """The person signs in to Clever (the simulator's portal), as they would before a portal click."""
        response = await (browser or self.browser).get(f"{CLEVER}/portal", params={"login_as": user_id})
        assert response.status_code == 200

    async def authorize(
        self,
        user_id: str | None,
        *,
        client_id: str = "rocketlit-web",
        redirect_uri: str = "https://rocketlit.test/auth/callback",
        browser: httpx.AsyncClient | None = None,
        **params: str,
    ) -> httpx.Response:
        """The frontend sends the browser to /authorize; the person picks `user_id` at Clever (unless
        Clever already has a session). Returns the last response (a redirect to the frontend or a page)."""
        browser = browser or self.browser
        query = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": "openid profile",
            "state": secrets.token_urlsafe(16),
            "nonce": secrets.token_urlsafe(16),
            **params,
        }
        response = await browser.get(f"{GW}/authorize", params=query)
        if response.status_code != 303 or not response.headers["location"].startswith(CLEVER):
            return response
        location = response.headers["location"]
        if user_id is not None:
            location += f"&login_as={user_id}"
        return await self.follow(location, browser)


# loading the CA bundle costs ~0.1 s per client; every browser of the test run shares one context
_TLS = ssl.create_default_context()


def make_browser(gateway: FastAPI, sim: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        verify=_TLS,
        mounts={
            "https://sso.test": httpx.ASGITransport(app=gateway),
            "https://clever.test": httpx.ASGITransport(app=sim),
        },
        follow_redirects=False,
    )


def location_params(response: httpx.Response) -> dict[str, str]:
    assert response.status_code in (302, 303), (response.status_code, response.text[:500])
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["location"]).query).items()}
