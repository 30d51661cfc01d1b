"""The district console as a client of the gateway, with the REAL roster-api in-process (SQLite and
PostgreSQL) and the Clever simulator: a Clever district admin gets an ID token for the console
(`sub` = `clever:<user id>`, the district, product `console`); a student is refused on the friendly page
with a reference; console and product sessions are never handed to each other's clients."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from asgi_lifespan import LifespanManager
from joserfc import jwt
from joserfc.jwk import KeySet
from pydantic import ValidationError
from sqlmodel import Session, select

from clever_sim.seed import SimUser
from roster_api.db import session_scope
from roster_api.main import create_app as create_roster_api
from roster_api.models import District, LoginAttempt
from roster_api.settings import Settings as RosterSettings

from .gwkit import (
    CLEVER,
    DISTRICT,
    GW,
    RL_SECRET,
    RL_WEB_SECRET,
    STUDENT,
    gateway_settings,
    location_params,
    make_seed,
)

ADMIN = "5787451bd72145af07002290"  # Clever district admin of the simulator's district
CONSOLE_ID = "district-console"
CONSOLE_SECRET = "console-client-secret-0123456789"
CONSOLE_CALLBACK = "https://roster.test/console/auth/callback"


def console_rocketlit() -> dict[str, Any]:
    """RocketLit's gateway settings with the console as one more client of its Clever app."""
    return {
        "display_name": "RocketLit",
        "clever_client_id": "clever-rl",
        "clever_client_secret": RL_SECRET,
        "clever_redirect_uri": f"{GW}/callback/clever/rocketlit",
        "clients": [
            {
                "client_id": "rocketlit-web",
                "client_secret": RL_WEB_SECRET,
                "redirect_uris": ["https://rocketlit.test/auth/callback"],
            },
            {
                "client_id": CONSOLE_ID,
                "client_secret": CONSOLE_SECRET,
                "redirect_uris": [CONSOLE_CALLBACK],
                "login_initiation_uri": "https://roster.test/console/login",
                "require_pkce": True,
                "console": True,
            },
        ],
    }


@pytest.fixture
async def console_env(
    make_env: Any,
    tmp_path: Path,
    roster_settings: RosterSettings,
    roster_engine: sa.Engine,
    make_key: Callable[..., str],
) -> Any:
    with session_scope(roster_engine) as s:
        s.add(District(id="springfield-usd", name="Springfield USD", clever_district_id=DISTRICT))
    key = make_key("resolve", name="sso-gateway")
    roster_app = create_roster_api(roster_settings)
    seed = make_seed()
    seed.add_user(SimUser(ADMIN, DISTRICT, "district_admin", "Dana", "Admin", "dana@springfield.example"))
    async with (
        LifespanManager(roster_app),
        make_env(
            roster_transport=httpx.ASGITransport(app=roster_app),
            roster_api_key=key,
            seed=seed,
            rocketlit=console_rocketlit(),
        ) as env,
    ):
        env.roster_engine = roster_engine
        yield env


async def _console_login(env: Any, user_id: str) -> tuple[httpx.Response, str, str]:
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(16)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    back = await env.authorize(
        user_id,
        client_id=CONSOLE_ID,
        redirect_uri=CONSOLE_CALLBACK,
        nonce=nonce,
        code_challenge=challenge,
        code_challenge_method="S256",
    )
    return back, verifier, nonce


async def test_district_admin_gets_a_console_id_token(console_env: Any) -> None:
    env = console_env
    back, verifier, nonce = await _console_login(env, ADMIN)
    assert back.headers["location"].startswith(CONSOLE_CALLBACK)
    form = {
        "grant_type": "authorization_code",
        "code": location_params(back)["code"],
        "redirect_uri": CONSOLE_CALLBACK,
        "code_verifier": verifier,
    }
    token = await env.browser.post(f"{GW}/token", data=form, auth=(CONSOLE_ID, CONSOLE_SECRET))
    assert token.status_code == 200, token.text
    jwks = KeySet.import_key_set((await env.browser.get(f"{GW}/jwks.json")).json())
    claims = jwt.decode(token.json()["id_token"], jwks).claims
    assert claims["sub"] == f"clever:{ADMIN}"
    assert (claims["aud"], claims["nonce"]) == (CONSOLE_ID, nonce)
    assert (claims["district"], claims["role"], claims["product"]) == (
        "springfield-usd",
        "district_admin",
        "console",
    )
    with Session(env.roster_engine) as s:
        attempts = s.exec(select(LoginAttempt)).all()
    assert [(a.product, a.outcome) for a in attempts] == [("console", "success")]

    account = await env.browser.get(f"{GW}/account")
    assert "Logged in to the district console" in account.text
    # the console session is not a RocketLit login: RocketLit's client is sent to Clever again
    again = await env.browser.get(
        f"{GW}/authorize",
        params={
            "response_type": "code",
            "client_id": "rocketlit-web",
            "redirect_uri": "https://rocketlit.test/auth/callback",
            "scope": "openid",
            "state": "s1",
        },
    )
    assert again.headers["location"].startswith(f"{CLEVER}/oauth/authorize")


async def test_student_is_refused_with_a_reference(console_env: Any) -> None:
    env = console_env
    page, _, _ = await _console_login(env, STUDENT)
    assert page.status_code == 403
    assert "The district console is for district administrators" in page.text
    reference = re.search(r"<code>(LA-[A-Z0-9-]+)</code>", page.text)
    assert reference is not None
    assert 'href="https://roster.test/console/login"' in page.text
    with Session(env.roster_engine) as s:
        attempt = s.exec(select(LoginAttempt)).one()
    assert (attempt.product, attempt.reason, attempt.reference) == ("console", "role_mismatch", reference[1])


async def test_a_product_session_is_not_handed_to_the_console(console_env: Any) -> None:
    env = console_env
    await env.login_at_clever(ADMIN)
    first = await env.authorize(None)  # RocketLit: the admin has no account, refused
    assert first.status_code == 403
    back, _, _ = await _console_login(env, None)  # type: ignore[arg-type]
    assert back.headers["location"].startswith(CONSOLE_CALLBACK)


def test_the_console_client_must_be_confidential(tmp_path: Path) -> None:
    rocketlit = console_rocketlit()
    rocketlit["clients"][-1]["client_secret"] = None
    with pytest.raises(ValidationError, match="console client must be confidential"):
        gateway_settings(tmp_path, rocketlit=rocketlit)
