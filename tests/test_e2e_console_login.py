"""End to end over real HTTP: "Log in with Clever" into the district console. roster-api (the console and
`POST /v1/console/resolve`), the Clever simulator and sso-gateway (with the console client) each run as
their own process on random free ports; an HTTP client plays the browser. A Clever district admin lands
in the console of their district; a student is refused on the gateway's page with a reference that
roster-api recorded. Runs on SQLite and PostgreSQL; the logs are scanned for the code afterwards."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa

from roster_harness import LoginStack, console_client, console_settings

pytestmark = pytest.mark.slow

DISTRICT = "6202763c8243d2100123dae5"
ADA = "5787451bd72145af0700228b"  # a rostered student
DANA = "5787451bd72145af07002290"  # the district's Clever district admin
ROSTER_CSV = (
    "school_id,school_name,teacher_email,teacher_first_name,teacher_last_name,teacher_clever_id,class_id,"
    "class_name,student_first_name,student_last_name,student_clever_id,student_email,student_grade_level\n"
    "sch-1,Springfield Elementary,grace@springfield.example,Grace,Hopper,5787451bd72145af0700228c,c-1,Math,"
    f"Ada,Lovelace,{ADA},ada@springfield.example,5\n"
)
CONSOLE_SECRET = "e2e-console-secret-0123456789"


def _seed(engine: sa.Engine) -> None:
    from roster_api.db import session_scope
    from roster_api.models import District

    with session_scope(engine) as s:
        s.add(District(id="springfield-usd", name="Springfield USD", clever_district_id=DISTRICT))
        s.add(District(id="shelbyville-usd", name="Shelbyville USD"))


@pytest.fixture
def stack(database_url: str, roster_engine: sa.Engine, tmp_path: Path) -> Iterator[LoginStack]:
    _seed(roster_engine)
    console = {"client_id": "console", "secret": CONSOLE_SECRET}
    with LoginStack(tmp_path, database_url=database_url) as stack:
        (tmp_path / "roster.csv").write_text(ROSTER_CSV)
        stack.start(
            key=stack.create_key("resolve"),
            clients=[console_client(stack.roster, **console)],
            districts=[{"id": DISTRICT, "name": "Springfield USD", "roster": "roster.csv"}],
            users=[{"id": DANA, "district": DISTRICT, "role": "district_admin", "first_name": "Dana",
                    "last_name": "Admin", "email": "dana@springfield.example"}],
            roster_env=console_settings(stack.roster, stack.gateway, **console),
        )  # fmt: skip
        yield stack


def console_login(browser: httpx.Client, roster: str, user: str) -> tuple[httpx.Response, str]:
    """Console "Log in with Clever" -> gateway -> simulator (the person picks `user`) -> gateway
    callback -> where the gateway sends the browser. Returns that response and the code it carried."""
    page = browser.get(f"{roster}/console/login")
    assert 'id="clever-login"' in page.text
    to_gateway = browser.get(f"{roster}/console/login/clever")
    assert to_gateway.status_code == 303
    to_clever = browser.get(to_gateway.headers["location"])
    assert to_clever.status_code == 303, to_clever.text[:300]
    at_clever = browser.get(to_clever.headers["location"] + f"&login_as={user}")
    assert at_clever.status_code == 302
    back = browser.get(at_clever.headers["location"])
    assert back.status_code == 303
    location = back.headers["location"]
    code = parse_qs(urlsplit(location).query).get("code", [""])[0]
    target = location if "://" in location else str(back.url.join(location))
    return browser.get(target), code


def test_console_login_with_clever_over_real_http(stack: LoginStack, roster_engine: sa.Engine) -> None:
    from sqlmodel import Session, select

    from roster_api.models import LoginAttempt

    roster = stack.roster
    with httpx.Client(timeout=10) as browser:
        landed, code = console_login(browser, roster, DANA)
        assert code
        assert landed.status_code == 303, landed.text[:500]
        assert landed.headers["location"] == "/console/"
        start = browser.get(f"{roster}/console/")
        assert start.headers["location"] == "/console/d/springfield-usd"
        overview = browser.get(f"{roster}/console/d/springfield-usd")
        assert overview.status_code == 200
        assert "Springfield USD" in overview.text
        assert browser.get(f"{roster}/console/d/shelbyville-usd").status_code == 404

    with httpx.Client(timeout=10) as browser:
        refused, _ = console_login(browser, roster, ADA)
        assert refused.status_code == 403
        assert "The district console is for district administrators" in refused.text
        reference = re.search(r"<code>(LA-[A-Z0-9-]+)</code>", refused.text)
        assert reference is not None
        assert browser.get(f"{roster}/console/").headers["location"] == "/console/login"

    with Session(roster_engine) as s:
        attempts = s.exec(select(LoginAttempt).where(LoginAttempt.product == "console")).all()
    outcomes = {(a.clever_user_id, a.outcome, a.reason, a.reference) for a in attempts}
    assert (ADA, "failure", "role_mismatch", reference[1]) in outcomes
    assert {(a.clever_user_id, a.outcome) for a in attempts} == {(DANA, "success"), (ADA, "failure")}
    for service in stack.processes:
        assert code not in service.log.read_text(), f"the code is in the {service.name} log"
