"""End to end over real HTTP: roster-api, the Clever simulator and sso-gateway each run as their own
process (their console scripts, uvicorn, random free ports); an HTTP client plays the browser and the
frontend. Runs on SQLite and PostgreSQL. The gateway's log output is scanned for secrets afterwards."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa

from roster_harness import LoginStack

pytestmark = pytest.mark.slow

DISTRICT = "6202763c8243d2100123dae5"
ADA = "5787451bd72145af0700228b"
NORA = "5787451bd72145af0700aaaa"  # known to Clever, not rostered
SAM = "5787451bd72145af0700bbbb"  # rostered by the district's own id only (sis_id), no Clever ID or email
ROSTER_CSV = (
    "school_id,school_name,teacher_email,teacher_first_name,teacher_last_name,teacher_clever_id,class_id,"
    "class_name,student_first_name,student_last_name,student_clever_id,student_email,student_grade_level\n"
    "sch-1,Springfield Elementary,grace@springfield.example,Grace,Hopper,5787451bd72145af0700228c,c-1,Math,"
    f"Ada,Lovelace,{ADA},ada@springfield.example,5\n"
)
WEB_SECRET = "e2e-frontend-secret-0123456789"


def seed_roster_db(engine: sa.Engine) -> dict[str, str]:
    from roster_api.db import session_scope
    from roster_api.models import Account, District, License, Person

    accounts = {}
    with session_scope(engine) as s:
        s.add(District(id="springfield-usd", name="Springfield USD", clever_district_id=DISTRICT))
        s.flush()
        s.add(License(district_id="springfield-usd", product="rocketlit", seats=10))
        s.add(
            Person(
                district_id="springfield-usd", id="p_ada", role="student", clever_id=ADA,
                clever_id_source="roster", email="ada@springfield.example", first_name="Ada",
                last_name="Lovelace", grade="5",
            )
        )  # fmt: skip
        s.add(
            Person(
                district_id="springfield-usd", id="p_sam", role="student", sis_id="S-42", first_name="Sam",
                last_name="Ito", grade="5",
            )
        )  # fmt: skip
        for name in ("ada", "sam"):
            accounts[name] = "acct_" + secrets.token_hex(12)
            s.add(
                Account(
                    district_id="springfield-usd",
                    person_id=f"p_{name}",
                    product="rocketlit",
                    account_id=accounts[name],
                )
            )
    return accounts


@pytest.fixture
def accounts(roster_engine: sa.Engine) -> dict[str, str]:
    return seed_roster_db(roster_engine)


@pytest.fixture
def stack(database_url: str, accounts: dict[str, str], tmp_path: Path) -> Iterator[LoginStack]:
    with LoginStack(tmp_path, database_url=database_url) as stack:
        (tmp_path / "roster.csv").write_text(ROSTER_CSV)
        stack.start(
            key=stack.create_key("resolve"),
            clients=[{"client_id": "rl-web", "client_secret": WEB_SECRET,
                      "redirect_uris": ["http://rocketlit.test/cb"],
                      "login_initiation_uri": "http://rocketlit.test/login"}],
            districts=[{"id": DISTRICT, "name": "Springfield USD", "roster": "roster.csv"}],
            users=[{"id": NORA, "district": DISTRICT, "role": "student", "first_name": "Nora",
                    "last_name": "Notrostered", "email": "nora@springfield.example"},
                   {"id": SAM, "district": DISTRICT, "role": "student", "first_name": "Sam",
                    "last_name": "Ito", "sis_id": "S-42"}],
        )  # fmt: skip
        yield stack


def query(response: httpx.Response) -> dict[str, str]:
    assert response.status_code in (302, 303), response.text[:500]
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["location"]).query).items()}


def login(browser: httpx.Client, gateway: str, user: str) -> httpx.Response:
    """Frontend authorize -> gateway -> simulator (person picks `user`) -> callback; the last response."""
    response = browser.get(
        f"{gateway}/authorize",
        params={"response_type": "code", "client_id": "rl-web", "redirect_uri": "http://rocketlit.test/cb",
                "scope": "openid profile", "state": "e2e-state", "nonce": "e2e-nonce"},
    )  # fmt: skip
    assert response.status_code == 303
    at_clever = browser.get(response.headers["location"] + f"&login_as={user}")
    assert at_clever.status_code == 302
    back = browser.get(at_clever.headers["location"])
    assert back.status_code == 303  # the callback never answers with a page: its URL holds the code
    if back.headers["location"].startswith("/problem/"):
        return browser.get(gateway + back.headers["location"])
    return back


def sis_id_logins(stack: LoginStack, accounts: dict[str, str], roster_engine: sa.Engine) -> None:
    """Sam's first login matches by the district's own id (Clever's roles.student.sis_id) and binds his
    Clever ID; the next one matches by that Clever ID."""
    from sqlmodel import Session, col, select

    from roster_api.models import LoginAttempt, Person

    for _ in range(2):
        with httpx.Client(timeout=10) as browser:
            back = login(browser, stack.gateway, SAM)
            assert back.headers["location"].startswith("http://rocketlit.test/cb?"), back.text[:300]
    with Session(roster_engine) as s:
        sam = s.exec(select(Person).where(Person.id == "p_sam")).one()
        attempts = s.exec(
            select(LoginAttempt)
            .where(LoginAttempt.clever_user_id == SAM)
            .order_by(col(LoginAttempt.created_at), col(LoginAttempt.rule).desc())
        ).all()
    assert (sam.clever_id, sam.clever_id_source) == (SAM, "login")
    assert [(a.matched_by, a.account_id) for a in attempts] == [
        ("sis_id", accounts["sam"]),
        ("clever_id", accounts["sam"]),
    ]


def test_login_over_real_http(stack: LoginStack, accounts: dict[str, str], roster_engine: sa.Engine) -> None:
    gateway = stack.gateway
    secrets_seen: set[str] = set()
    with httpx.Client(timeout=10) as browser:
        back = login(browser, gateway, ADA)
        params = query(back)
        assert back.headers["location"].startswith("http://rocketlit.test/cb?")
        assert params["state"] == "e2e-state"
        token = httpx.post(
            f"{gateway}/token",
            data={
                "grant_type": "authorization_code",
                "code": params["code"],
                "redirect_uri": "http://rocketlit.test/cb",
            },
            auth=("rl-web", WEB_SECRET),
        )
        assert token.status_code == 200, token.text
        body = token.json()
        info = httpx.get(f"{gateway}/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
        assert info.json()["sub"] == accounts["ada"]
        assert info.json()["name"] == "Ada Lovelace"
        replay = httpx.post(
            f"{gateway}/token",
            data={
                "grant_type": "authorization_code",
                "code": params["code"],
                "redirect_uri": "http://rocketlit.test/cb",
            },
            auth=("rl-web", WEB_SECRET),
        )
        assert replay.status_code == 400
        secrets_seen |= {params["code"], body["access_token"], body["id_token"], *browser.cookies.values()}

    with httpx.Client(timeout=10) as browser:
        denied = login(browser, gateway, NORA)
        assert denied.status_code == 403
        assert "find your RocketLit account" in denied.text
        assert "Reference code" in denied.text
        secrets_seen |= set(browser.cookies.values())

    sis_id_logins(stack, accounts, roster_engine)

    # roster-api goes away: the next login is a friendly 503, not a 500
    stack.processes["roster-api"].stop()
    with httpx.Client(timeout=10) as browser:
        down = login(browser, gateway, ADA)
        assert down.status_code == 503
        assert "RocketLit is having trouble" in down.text

    stack.processes["sso-gateway"].stop()
    logged = stack.processes["sso-gateway"].log.read_text()
    assert '"outcome": "success"' in logged
    assert '"outcome": "denied"' in logged
    assert '"outcome": "roster_unavailable"' in logged
    for value in secrets_seen:
        assert len(value) < 8 or value not in logged
    for fragment in ("@springfield.example", "code=", "state=", "e2e-nonce", WEB_SECRET):
        assert fragment not in logged
