"""End to end over real HTTP: roster-api, the Clever simulator and sso-gateway each run as their own
process (their console scripts, uvicorn, random free ports); an HTTP client plays the browser and the
frontend. Runs on SQLite and PostgreSQL. The gateway's log output is scanned for secrets afterwards."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
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


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def wait_up(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{url} exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not come up: {log.read_text()[-2000:]}")


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
def stack(database_url: str, roster_engine: sa.Engine, tmp_path: Path) -> Iterator[dict[str, Any]]:
    roster_port, gateway_port, clever_port = free_ports(3)
    roster, gateway, clever = (f"http://127.0.0.1:{p}" for p in (roster_port, gateway_port, clever_port))
    accounts = seed_roster_db(roster_engine)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("ROSTER_", "SSO_"))}
    roster_env = {
        **base_env,
        "ROSTER_DATABASE_URL": database_url,
        "ROSTER_DATA_DIR": str(tmp_path / "roster"),
        "ROSTER_RUN_WORKER": "false",
        "ROSTER_RUN_SCHEDULER": "false",
    }
    key = subprocess.run(
        [BIN / "roster-api", "keys", "create", "--name", "sso-gateway", "--scope", "resolve"],
        env=roster_env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    (tmp_path / "roster.csv").write_text(ROSTER_CSV)
    sim_config = {
        "districts": [{"id": DISTRICT, "name": "Springfield USD", "roster": "roster.csv"}],
        "users": [{"id": NORA, "district": DISTRICT, "role": "student", "first_name": "Nora",
                   "last_name": "Notrostered", "email": "nora@springfield.example"},
                  {"id": SAM, "district": DISTRICT, "role": "student", "first_name": "Sam",
                   "last_name": "Ito", "sis_id": "S-42"}],
        "apps": [{"client_id": "rl-clever", "client_secret": "rl-clever-secret", "name": "RocketLit",
                  "redirect_uris": [f"{gateway}/callback/clever/rocketlit"]}],
    }  # fmt: skip
    (tmp_path / "sim.json").write_text(json.dumps(sim_config))
    gateway_env = {
        **base_env,
        "SSO_ENVIRONMENT": "development",
        "SSO_ISSUER": gateway,
        "SSO_DATA_DIR": str(tmp_path / "gateway"),
        "SSO_CLEVER_AUTHORIZE_URL": f"{clever}/oauth/authorize",
        "SSO_CLEVER_TOKEN_URL": f"{clever}/oauth/tokens",
        "SSO_CLEVER_API_URL": clever,
        "SSO_ROSTER_API_URL": roster,
        "SSO_ROSTER_API_KEY": key,
        "SSO_ROCKETLIT__DISPLAY_NAME": "RocketLit",
        "SSO_ROCKETLIT__CLEVER_CLIENT_ID": "rl-clever",
        "SSO_ROCKETLIT__CLEVER_CLIENT_SECRET": "rl-clever-secret",
        "SSO_ROCKETLIT__CLEVER_REDIRECT_URI": f"{gateway}/callback/clever/rocketlit",
        "SSO_ROCKETLIT__CLIENTS": json.dumps(
            [{"client_id": "rl-web", "client_secret": WEB_SECRET, "redirect_uris": ["http://rocketlit.test/cb"],
              "login_initiation_uri": "http://rocketlit.test/login"}]
        ),
    }  # fmt: skip
    commands = {
        "roster-api": (
            [BIN / "roster-api", "serve", "--port", str(roster_port)],
            roster_env,
            f"{roster}/readyz",
        ),
        "clever-sim": (
            [BIN / "clever-sim", "serve", "--port", str(clever_port), "--config", tmp_path / "sim.json"],
            base_env,
            f"{clever}/",
        ),
        "sso-gateway": (
            [BIN / "sso-gateway", "serve", "--port", str(gateway_port)],
            gateway_env,
            f"{gateway}/readyz",
        ),
    }
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs: dict[str, Path] = {}
    try:
        for name, (cmd, env, ready) in commands.items():
            logs[name] = tmp_path / f"{name}.log"
            with logs[name].open("wb") as out:
                procs[name] = subprocess.Popen(
                    [str(c) for c in cmd], env=env, stdout=out, stderr=subprocess.STDOUT
                )
            wait_up(ready, procs[name], logs[name])
        yield {"gateway": gateway, "clever": clever, "accounts": accounts, "procs": procs, "logs": logs}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


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


def sis_id_logins(stack: dict[str, Any], roster_engine: sa.Engine) -> None:
    """Sam's first login matches by the district's own id (Clever's roles.student.sis_id) and binds his
    Clever ID; the next one matches by that Clever ID."""
    from sqlmodel import Session, col, select

    from roster_api.models import LoginAttempt, Person

    for _ in range(2):
        with httpx.Client(timeout=10) as browser:
            back = login(browser, stack["gateway"], SAM)
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
        ("sis_id", stack["accounts"]["sam"]),
        ("clever_id", stack["accounts"]["sam"]),
    ]


def test_login_over_real_http(stack: dict[str, Any], roster_engine: sa.Engine) -> None:
    gateway = stack["gateway"]
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
        assert info.json()["sub"] == stack["accounts"]["ada"]
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

    sis_id_logins(stack, roster_engine)

    # roster-api goes away: the next login is a friendly 503, not a 500
    stack["procs"]["roster-api"].send_signal(signal.SIGTERM)
    stack["procs"]["roster-api"].wait(timeout=10)
    with httpx.Client(timeout=10) as browser:
        down = login(browser, gateway, ADA)
        assert down.status_code == 503
        assert "RocketLit is having trouble" in down.text

    stack["procs"]["sso-gateway"].send_signal(signal.SIGTERM)
    stack["procs"]["sso-gateway"].wait(timeout=10)
    logged = stack["logs"]["sso-gateway"].read_text()
    assert '"outcome": "success"' in logged
    assert '"outcome": "denied"' in logged
    assert '"outcome": "roster_unavailable"' in logged
    for value in secrets_seen:
        assert len(value) < 8 or value not in logged
    for fragment in ("@springfield.example", "code=", "state=", "e2e-nonce", WEB_SECRET):
        assert fragment not in logged
