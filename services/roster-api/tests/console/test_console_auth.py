"""Console sign-in, sessions, CSRF, sign-out and district isolation, through real HTTP (TestClient)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from roster_api.console import sessions
from roster_api.console.web import redirect
from roster_api.models import ApiKey, AuditEvent, utcnow

from .conftest import sign_in
from .helpers import csrf_of


@pytest.fixture
def database_url(sqlite_template: Path, tmp_path: Path) -> str:
    """Sessions and CSRF do not depend on the database: these run on SQLite only (the page and
    isolation tests run on both)."""
    path = tmp_path / "roster.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


def test_pages_need_a_session(browser: TestClient, districts: list[str]) -> None:
    for path in ("/console/", "/console/d/d1", "/console/d/d1/imports", "/console/districts"):
        response = browser.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"] == "/console/login"


def test_sign_in_with_a_key_audits_and_never_echoes_it(
    browser: TestClient, make_key: Callable[..., str], districts: list[str], roster_engine: sa.Engine
) -> None:
    key = make_key("admin", name="alice-support")
    response = sign_in(browser, key)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie.replace("Lax", "lax")
    assert key not in cookie
    assert key not in response.headers["location"]
    start = browser.get("/console/")
    assert start.headers["location"] == "/console/districts"
    page = browser.get("/console/districts")
    assert page.status_code == 200
    assert "alice-support" in page.text
    assert key not in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "unsafe-inline" not in page.headers["content-security-policy"]
    with Session(roster_engine) as session:
        actions = session.exec(select(AuditEvent.action).where(AuditEvent.actor == "alice-support")).all()
    assert "console.sign_in" in actions


def test_wrong_or_weak_keys_are_refused(
    browser: TestClient, make_key: Callable[..., str], districts: list[str]
) -> None:
    assert sign_in(browser, "rk_not-a-key").status_code == 401
    assert sign_in(browser, make_key("roster:read", name="reader")).status_code == 401
    assert browser.get("/console/").status_code == 303


def test_sign_in_without_the_form_token_is_refused(
    browser: TestClient, make_key: Callable[..., str], districts: list[str]
) -> None:
    response = browser.post("/console/login", data={"csrf_token": "forged", "api_key": make_key("admin")})
    assert response.status_code == 403
    assert browser.get("/console/").status_code == 303


def test_forms_without_the_csrf_token_get_a_403_page(as_support: TestClient) -> None:
    for token in (None, "forged"):
        data = {"nightly_time": "03:00"} | ({"csrf_token": token} if token else {})
        response = as_support.post("/console/d/d1/settings/sync", data=data)
        assert response.status_code == 403
        assert "text/html" in response.headers["content-type"]
        assert "out of date" in response.text
    settings = as_support.get("/console/d/d1/settings")
    assert 'value="02:00"' in settings.text


def test_a_valid_form_changes_and_audits_with_the_person(
    as_support: TestClient, roster_engine: sa.Engine
) -> None:
    token = csrf_of(as_support.get("/console/d/d1/settings").text)
    response = as_support.post(
        "/console/d/d1/settings/sync",
        data={"csrf_token": token, "nightly_time": "03:15", "timezone": "America/Chicago"},
    )
    assert response.status_code == 303
    page = as_support.get("/console/d/d1/settings")
    assert 'value="03:15"' in page.text
    assert 'value="America/Chicago"' in page.text
    with Session(roster_engine) as session:
        event = session.exec(select(AuditEvent).where(AuditEvent.action == "district.update")).first()
    assert event is not None
    assert event.actor == "alice-support"
    assert event.district_id == "d1"


def test_bad_form_values_are_a_422_page_not_a_500(as_support: TestClient) -> None:
    token = csrf_of(as_support.get("/console/d/d1/settings").text)
    response = as_support.post(
        "/console/d/d1/settings/sync",
        data={"csrf_token": token, "nightly_time": "25:99", "timezone": "Mars/Base"},
    )
    assert response.status_code == 422
    assert "Not saved" in response.text


def test_district_admin_sees_only_their_district(as_d1_admin: TestClient) -> None:
    assert as_d1_admin.get("/console/").headers["location"] == "/console/d/d1"
    assert as_d1_admin.get("/console/d/d1").status_code == 200
    for path in ("/console/d/d2", "/console/d/d2/imports", "/console/d/d2/settings", "/console/d/nope"):
        response = as_d1_admin.get(path)
        assert response.status_code == 404, path
        assert "text/html" in response.headers["content-type"]
    assert as_d1_admin.get("/console/districts").status_code == 403
    token = csrf_of(as_d1_admin.get("/console/d/d1/settings").text)
    response = as_d1_admin.post(
        "/console/d/d2/settings/sync", data={"csrf_token": token, "nightly_time": "04:00"}
    )
    assert response.status_code == 404
    # support-only actions on their own district
    assert (
        as_d1_admin.post("/console/d/d1/purge", data={"csrf_token": token, "confirm": "d1"}).status_code
        == 403
    )


def test_logout_ends_the_session(as_support: TestClient) -> None:
    token = csrf_of(as_support.get("/console/districts").text)
    response = as_support.post("/console/logout", data={"csrf_token": token})
    assert response.status_code == 303
    assert as_support.get("/console/districts").status_code == 303


def test_a_revoked_key_ends_its_session(as_support: TestClient, roster_engine: sa.Engine) -> None:
    with roster_engine.begin() as conn:
        conn.execute(sa.update(ApiKey).where(col(ApiKey.name) == "alice-support").values(revoked_at=utcnow()))
    assert as_support.get("/console/districts").status_code == 303


def _put(client: TestClient, name: str, value: str) -> None:
    domain = next(c.domain for c in client.cookies.jar if c.name == name)
    client.cookies.set(name, value, domain=domain)


def _session_cookie(client: TestClient, settings: Any) -> sessions.ConsoleSession:
    value = client.cookies.get(sessions.cookie_name(settings))
    session = sessions.decode(settings, value)
    assert session is not None
    return session


def test_idle_and_absolute_timeouts(as_support: TestClient, console_app: Any) -> None:
    settings = console_app.state.settings
    current = _session_cookie(as_support, settings)
    name = sessions.cookie_name(settings)
    now = time.time()
    idle = replace(current, seen=now - sessions.IDLE_SECONDS - 1)
    _put(as_support, name, sessions.encode(settings, idle))
    assert as_support.get("/console/districts").status_code == 303
    old = replace(current, issued=now - sessions.ABSOLUTE_SECONDS - 1, seen=now)
    _put(as_support, name, sessions.encode(settings, old))
    assert as_support.get("/console/districts").status_code == 303
    # a session used a while ago (within the idle time) is re-sent with its idle clock moved on
    recent = replace(current, seen=now - sessions.REFRESH_SECONDS - 5)
    _put(as_support, name, sessions.encode(settings, recent))
    response = as_support.get("/console/districts")
    assert response.status_code == 200
    assert _session_cookie(as_support, settings).seen > recent.seen


def test_a_tampered_cookie_is_no_session(as_support: TestClient, console_app: Any) -> None:
    settings = console_app.state.settings
    current = _session_cookie(as_support, settings)
    forged = sessions.encode(settings, replace(current, district_id=None, actor="mallory"))
    body, _, mac = forged.partition(".")
    name = sessions.cookie_name(settings)
    _put(as_support, name, body + "." + mac[::-1])
    assert as_support.get("/console/districts").status_code == 303


def test_an_unknown_console_address_is_a_404_page(browser: TestClient, as_support: TestClient) -> None:
    response = as_support.get("/console/no/such/page")
    assert response.status_code == 404
    assert "text/html" in response.headers["content-type"]
    assert "no such page" in response.text


def test_a_notice_shows_only_when_the_console_wrote_it(as_d1_admin: TestClient) -> None:
    """Notices ride in the redirect's query string, signed: a crafted link cannot put its own words in the
    console's banner, while the console's own redirects still show theirs."""
    crafted = as_d1_admin.get("/console/d/d1", params={"notice": "Your key expired: call 555-0100"})
    assert crafted.status_code == 200
    assert "555-0100" not in crafted.text
    forged = as_d1_admin.get("/console/d/d1", params={"notice": "Call 555-0100", "n": "0" * 32})
    assert "555-0100" not in forged.text
    sent = redirect("/console/d/d1", notice="Sync settings saved.")
    shown = as_d1_admin.get(sent.headers["location"])
    assert '<p class="notice" role="status">Sync settings saved.</p>' in shown.text
