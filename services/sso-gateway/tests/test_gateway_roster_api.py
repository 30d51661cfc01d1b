"""The whole login with the REAL roster-api in-process (its app over ASGITransport, on SQLite and on
PostgreSQL), the Clever simulator, and Authlib's client as the frontend."""

from __future__ import annotations

import re
import secrets
import warnings
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from asgi_lifespan import LifespanManager
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlmodel import Session, select

from clever_sim.seed import SimUser
from roster_api.db import session_scope
from roster_api.main import create_app as create_roster_api
from roster_api.models import Account, District, License, LoginAttempt, Person
from roster_api.settings import Settings as RosterSettings

from .gwkit import (
    CLEVER,
    DISTRICT,
    GW,
    IO_WEB_SECRET,
    ROSTER_KEY,
    STRANGER,
    STUDENT,
    TEACHER,
    location_params,
    make_seed,
)

pytestmark = pytest.mark.filterwarnings("ignore:The httpx module is deprecated")

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from authlib.integrations.httpx_client import AsyncOAuth2Client

EMAIL_ONLY = "5787451bd72145af0700228f"  # Clever knows this id; the roster has only the email


def seed_roster(engine: sa.Engine) -> dict[str, dict[str, str]]:
    """Springfield (linked to the simulator's district) licenses both products; Ada and Grace are rostered
    with Clever IDs, Bea with an email only. Returns account ids by person and product."""
    people = {
        "ada": (STUDENT, "student", "ada.lovelace@springfield.example", "Ada", "Lovelace"),
        "grace": (TEACHER, "teacher", "grace.hopper@springfield.example", "Grace", "Hopper"),
        "bea": (None, "student", "bea.emailonly@springfield.example", "Bea", "Only"),
    }
    accounts: dict[str, dict[str, str]] = {}
    with session_scope(engine) as s:
        s.add(District(id="springfield-usd", name="Springfield USD", clever_district_id=DISTRICT))
        s.flush()
        for product in ("rocketlit", "innerorbit"):
            s.add(License(district_id="springfield-usd", product=product, seats=100))
        for key, (clever_id, role, email, first, last) in people.items():
            person_id = "p_" + secrets.token_hex(8)
            s.add(
                Person(
                    district_id="springfield-usd",
                    id=person_id,
                    role=role,
                    clever_id=clever_id,
                    clever_id_source="roster" if clever_id else None,
                    email=email,
                    first_name=first,
                    last_name=last,
                    grade="5" if role == "student" else None,
                )
            )
            for product in ("rocketlit", "innerorbit"):
                account_id = "acct_" + secrets.token_hex(12)
                accounts.setdefault(key, {})[product] = account_id
                s.add(
                    Account(
                        district_id="springfield-usd",
                        person_id=person_id,
                        product=product,
                        account_id=account_id,
                    )
                )
    return accounts


@pytest.fixture
async def real_env(
    make_env: Any, roster_settings: RosterSettings, roster_engine: sa.Engine, make_key: Callable[..., str]
) -> Any:
    accounts = seed_roster(roster_engine)
    key = make_key("resolve", name="sso-gateway")
    roster_app = create_roster_api(roster_settings)
    seed = make_seed()
    seed.add_user(
        SimUser(EMAIL_ONLY, DISTRICT, "student", "Bea", "Only", "Bea.EmailOnly@springfield.example")
    )
    async with (
        LifespanManager(roster_app),
        make_env(roster_transport=httpx.ASGITransport(app=roster_app), roster_api_key=key, seed=seed) as env,
    ):
        env.accounts = accounts
        env.roster_engine = roster_engine
        yield env
    assert key != ROSTER_KEY


async def test_authlib_frontend_logs_in_with_real_roster_api(real_env: Any) -> None:
    env = real_env
    client = AsyncOAuth2Client(
        client_id="innerorbit-web",
        client_secret=IO_WEB_SECRET,
        token_endpoint_auth_method="client_secret_basic",
        redirect_uri="https://innerorbit.test/oidc/callback",
        scope="openid profile",
        code_challenge_method="S256",
        transport=httpx.ASGITransport(app=env.gateway),
    )
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(16)
    url, state = client.create_authorization_url(f"{GW}/authorize", code_verifier=verifier, nonce=nonce)
    first = await env.browser.get(url)
    assert first.headers["location"].startswith(f"{CLEVER}/oauth/authorize")
    back = await env.follow(first.headers["location"] + f"&login_as={TEACHER}")
    assert location_params(back)["state"] == state
    token = await client.fetch_token(
        f"{GW}/token", authorization_response=back.headers["location"], code_verifier=verifier
    )
    jwks = KeySet.import_key_set((await env.browser.get(f"{GW}/jwks.json")).json())
    claims = jwt.decode(token["id_token"], jwks).claims
    assert claims["sub"] == env.accounts["grace"]["innerorbit"]
    assert claims["aud"] == "innerorbit-web"
    assert claims["nonce"] == nonce
    assert claims["role"] == "teacher"
    assert claims["district"] == "springfield-usd"
    info = (await client.get(f"{GW}/userinfo")).json()
    assert info["name"] == "Grace Hopper"
    await client.aclose()
    with Session(env.roster_engine) as s:
        attempts = s.exec(select(LoginAttempt)).all()
    assert [(a.outcome, a.account_id) for a in attempts] == [("success", env.accounts["grace"]["innerorbit"])]


async def test_email_fallback_binds_on_first_login(real_env: Any) -> None:
    env = real_env
    back = await env.authorize(EMAIL_ONLY)
    code = location_params(back)["code"]
    token = await env.browser.post(
        f"{GW}/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "https://rocketlit.test/auth/callback",
        },
        auth=("rocketlit-web", "rocketlit-web-secret-0123456789"),
    )
    jwks = KeySet.import_key_set((await env.browser.get(f"{GW}/jwks.json")).json())
    assert jwt.decode(token.json()["id_token"], jwks).claims["sub"] == env.accounts["bea"]["rocketlit"]
    with Session(env.roster_engine) as s:
        bea = s.exec(select(Person).where(Person.email == "bea.emailonly@springfield.example")).one()
    assert bea.clever_id == EMAIL_ONLY


async def test_unrostered_user_sees_reference_that_support_can_look_up(real_env: Any) -> None:
    env = real_env
    page = await env.authorize(STRANGER)
    assert page.status_code == 403
    assert "couldn&#39;t find your RocketLit account" in page.text
    match = re.search(r"Reference code: <code>([^<]+)</code>", page.text)
    assert match
    with Session(env.roster_engine) as s:
        attempt = s.get(LoginAttempt, match.group(1))
    assert attempt is not None
    assert attempt.reason == "no_account"
    assert attempt.clever_user_id == STRANGER
    assert env.browser.cookies.get("__Host-sso_session") is None
