"""The district console in headless Chromium against a real roster-api (uvicorn on a free port, the import
worker running): support signs in with a key by keyboard, switches district, uploads a roster with
errors, reads them, uploads the fixed file, previews and applies it, has a smaller file held, reviews
and approves it, finds a student, looks up a login reference and rotates the SFTP password. axe-core
checks every page (0 serious or critical WCAG 2.1 A/AA violations), the pages must raise no CSP
violation and fit a 375 px wide screen.

Runs when /usr/bin/chromium exists and is skipped otherwise, unless REQUIRE_BROWSER_TESTS=1. Screenshots
are kept in test-artifacts/console/."""

from __future__ import annotations

import re
import shutil
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from roster_harness import console_client, free_port, free_ports

from .browser import CHROMIUM, CHROMIUM_ARGS, require_chromium

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "console"

require_chromium()

import uvicorn  # noqa: E402
from axe_playwright_python import sync_playwright as axe_module  # noqa: E402
from playwright.sync_api import ConsoleMessage, FilePayload, Page, expect, sync_playwright  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CLEVER_DISTRICT = "5a1b2c3d4e5f60718293a4b5"
TEACHER = "HS1,Riverside High,adams@riverside.example.edu,Pat,Adams,HS1-PE,PE 1,"
HEADER = (
    "school_id,school_name,teacher_email,teacher_first_name,teacher_last_name,class_id,class_name,"
    "student_first_name,student_last_name,student_email,student_grade_level\n"
)
GOOD_CSV = (
    HEADER
    + TEACHER
    + "Sam,Lee,sam.lee@riverside.example.edu,9\n"
    + TEACHER
    + "Jo,Kim,jo.kim@r.example.edu,10\n"
)
SMALLER_CSV = HEADER + TEACHER + "Sam,Lee,sam.lee@riverside.example.edu,9\n"
BAD_CSV = HEADER + TEACHER + "Sam,Lee,sam.lee@riverside.example.edu,9\n" + TEACHER + "Jo,Kim,,eleventy\n"
AXE_SOURCE = (Path(axe_module.__file__).parent / "axe.min.js").read_text(encoding="utf-8")
# what sticks out of a narrow screen (a table inside its scrolling wrapper does not count)
WIDE_ELEMENTS = """[...document.querySelectorAll('body *')]
  .filter(e => e.getBoundingClientRect().right > 376 && !e.parentElement.closest('.table-wrap'))
  .slice(0, 5).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))"""
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@pytest.fixture
def stack(sqlite_template: Path, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """roster-api with its worker on a free port, two districts, a support key and a failed login."""
    from roster_api.auth import create_api_key
    from roster_api.db import make_engine, session_scope
    from roster_api.main import create_app
    from roster_api.settings import Settings

    database = tmp_path / "roster.db"
    shutil.copyfile(sqlite_template, database)
    settings = Settings(
        database_url=f"sqlite:///{database}",
        data_dir=tmp_path / "data",
        run_scheduler=False,
        worker_poll_seconds=0.1,
    )
    engine = make_engine(settings.database_url)
    with session_scope(engine) as session:
        _, admin = create_api_key(session=session, name="setup", scopes=["admin"], district_id=None)
        _, support = create_api_key(session=session, name="sam-support", scopes=["admin"], district_id=None)
        _, resolver = create_api_key(session=session, name="gateway", scopes=["resolve"], district_id=None)
    engine.dispose()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "roster-api did not start"
        assert thread.is_alive(), "roster-api stopped while starting"
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {admin}"}) as api:
        for district_id, clever in (("d1", CLEVER_DISTRICT), ("d2", None)):
            body = {
                "id": district_id,
                "name": f"District {district_id}",
                "clever_district_id": clever,
                "licenses": {"rocketlit": {"seats": 100}},
            }
            assert api.post("/v1/districts", json=body).status_code == 201
        refused = api.post(
            "/v1/resolve",
            headers={"Authorization": f"Bearer {resolver}"},
            json={
                "product": "rocketlit",
                "clever_district_id": CLEVER_DISTRICT,
                "clever_user_id": "6a1b2c3d4e5f60718293a4b5",
                "clever_role": "student",
            },
        )
        assert refused.status_code == 422, refused.text
        reference = refused.json()["error"]["details"][0]["reference"]
    try:
        yield {"base": base, "support_key": support, "reference": reference}
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# the Content Security Policy violations Chromium logged on each page, checked by _check
_CSP_ERRORS: weakref.WeakKeyDictionary[Page, list[str]] = weakref.WeakKeyDictionary()


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        context.set_default_timeout(15_000)
        page = context.new_page()
        csp_errors = _CSP_ERRORS[page] = []

        def note_csp_error(message: ConsoleMessage) -> None:
            if "Content Security Policy" in message.text:
                csp_errors.append(message.text)

        page.on("console", note_csp_error)
        page.on("dialog", lambda dialog: dialog.accept())
        try:
            yield page
        finally:
            context.close()
            browser.close()


def _check(page: Page, name: str) -> None:
    """axe-core (0 serious/critical), no CSP violation, fits 375 px, and a screenshot."""
    page.evaluate(AXE_SOURCE)
    result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_TAGS)
    bad = [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in {"serious", "critical"}
    ]
    assert not bad, f"{name}: {bad}"
    assert not _CSP_ERRORS[page], f"{name}: {_CSP_ERRORS[page]}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    size = page.viewport_size
    page.set_viewport_size({"width": 375, "height": 800})
    overflow = page.evaluate("document.documentElement.scrollWidth")
    wide = page.evaluate(WIDE_ELEMENTS)
    assert size is not None
    page.set_viewport_size(size)
    assert overflow <= 375, f"{name} is {overflow} px wide at 375 px: {wide}"


def _upload(page: Page, base: str, text: str, name: str) -> None:
    page.goto(f"{base}/console/d/d1/upload")
    upload: FilePayload = {"name": name, "mimeType": "text/csv", "buffer": text.encode()}
    page.set_input_files("#file", files=[upload])
    page.get_by_label("Check it and preview the changes").check()
    page.get_by_role("button", name="Upload").click()
    # the page polls while the worker runs the import, then reloads with the report
    expect(page.locator(".status-line .badge")).to_have_text(re.compile("validated|rejected"), timeout=20_000)


def _import_flow(page: Page, base: str, prefix: str) -> None:
    """Upload a file with errors and read them, upload the fixed file, preview and apply it; then a smaller
    file is held, reviewed and approved. Screenshots are named with `prefix`."""
    _upload(page, base, BAD_CSV, "roster-with-errors.csv")
    expect(page.get_by_role("heading", name=re.compile(r"Errors \(\d+\)"))).to_be_visible()
    expect(page.get_by_role("cell", name="eleventy").first).to_be_visible()
    _check(page, prefix + "04-import-errors")

    _upload(page, base, GOOD_CSV, "roster-fixed.csv")
    expect(page.get_by_role("heading", name="The file passed the check")).to_be_visible()
    _check(page, prefix + "05-preview")
    page.get_by_role("button", name="Apply this file").click()
    expect(page.locator(".status-line .badge")).to_have_text("applied", timeout=20_000)
    _check(page, prefix + "06-applied")

    # a file without one of the two students would deactivate half of them: held, reviewed, approved
    page.goto(f"{base}/console/d/d1/upload")
    smaller: FilePayload = {
        "name": "roster-smaller.csv",
        "mimeType": "text/csv",
        "buffer": SMALLER_CSV.encode(),
    }
    page.set_input_files("#file", files=[smaller])
    page.get_by_label("Import it now").check()
    page.get_by_role("button", name="Upload").click()
    expect(page.locator(".status-line .badge")).to_have_text("held", timeout=20_000)
    expect(page.locator("#hold-h + p + ul")).to_contain_text(
        "1 of 2 students (50.0 %) would be deactivated; the threshold is 10 %."
    )
    _check(page, prefix + "06b-held")
    page.once("dialog", lambda dialog: dialog.accept())  # "Apply this import to the roster now?"
    page.get_by_role("button", name="Approve and apply").click()
    expect(page.locator(".status-line .badge")).to_have_text("applied", timeout=20_000)
    _check(page, prefix + "06c-approved")


def test_support_console_flow(stack: dict[str, Any], page: Page) -> None:
    base = stack["base"]
    page.goto(f"{base}/console/")
    expect(page).to_have_url(f"{base}/console/login")
    _check(page, "01-sign-in")
    for _ in range(10):  # by keyboard alone: Tab to the key field, type, Enter
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "api_key":
            break
    page.keyboard.type(stack["support_key"])
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Districts", exact=True)).to_be_visible()
    assert stack["support_key"] not in page.url
    _check(page, "02-districts")

    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Name (who uses it, e.g. sso-gateway)").fill("browser-tool")
    page.get_by_role("checkbox", name=re.compile("roster:read")).check()
    page.get_by_role("button", name="Create key").click()
    expect(page.locator("#new-api-key")).to_contain_text("rk_")
    assert "rk_" not in page.url
    _check(page, "02b-api-keys")

    page.get_by_label("District", exact=True).fill("d1")
    page.get_by_role("button", name="Go").click()
    expect(page.get_by_role("heading", name="Not ready yet")).to_be_visible()
    _check(page, "03-overview")

    _import_flow(page, base, "")

    page.get_by_role("link", name="Imports", exact=True).click()
    expect(page.get_by_role("cell", name="roster-fixed.csv").first).to_be_visible()
    _check(page, "07-imports")

    page.get_by_role("link", name="Roster", exact=True).click()
    _check(page, "08-roster")
    page.get_by_label("Search by name, email or Clever ID").fill("Lee")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="Lee, Sam").click()
    expect(page.get_by_role("heading", name="Sam Lee")).to_be_visible()
    _check(page, "09-person")

    page.get_by_role("link", name="Logins", exact=True).click()
    page.get_by_label("Reference the user saw").fill(stack["reference"])
    page.get_by_role("button", name="Look up").click()
    expect(page.get_by_role("heading", name=f"Login {stack['reference']}: failure")).to_be_visible()
    _check(page, "10-login-lookup")

    page.get_by_role("link", name="Settings", exact=True).click()
    page.get_by_role("button", name="Create an SFTP login").click()
    first = page.locator("#new-password").inner_text()
    page.get_by_role("button", name="Rotate password").click()
    second = page.locator("#new-password").inner_text()
    assert first
    assert second
    assert first != second
    _check(page, "11-settings")
    contacts = page.get_by_label(re.compile("^Contacts: email addresses"))
    contacts.fill("it-team@d1.example.org\nnot-an-address")
    page.get_by_role("button", name="Save notice settings").click()
    expect(page.locator("#contacts-error")).to_contain_text("Contacts, entry 2: must be an email address")
    _check(page, "12-settings-field-error")
    page.get_by_label(re.compile("^Contacts: email addresses")).fill("it-team@d1.example.org")
    page.get_by_role("button", name="Save notice settings").click()
    expect(page.get_by_text("Notice settings saved.")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/console/login"))
    page.goto(f"{base}/console/d/d1")
    expect(page).to_have_url(f"{base}/console/login")


CONSOLE_SECRET = "browser-console-secret-0123456789"
DANA = "5a1b2c3d4e5f60718293a4c1"  # the Clever district admin of CLEVER_DISTRICT
ADA = "5a1b2c3d4e5f60718293a4c2"  # a Clever student of the same district


def _serve(app: Any, port: int, name: str) -> tuple[uvicorn.Server, threading.Thread]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, f"{name} did not start"
        assert thread.is_alive(), f"{name} stopped while starting"
        time.sleep(0.05)
    return server, thread


@pytest.fixture
def clever_stack(sqlite_template: Path, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """roster-api with the console's Clever login, the sso-gateway with the console client, and the Clever
    simulator with a district admin and a student of district d1's Clever district."""
    from clever_sim.app import create_app as create_sim
    from clever_sim.seed import Seed, SimApp, SimUser
    from roster_api.auth import create_api_key
    from roster_api.db import make_engine, session_scope
    from roster_api.main import create_app
    from roster_api.models import District
    from roster_api.settings import Settings
    from sso_gateway.main import create_app as create_gateway
    from sso_gateway.settings import Settings as GatewaySettings

    roster_port, gateway_port, clever_port = free_ports(3)
    roster, gateway, clever = (f"http://127.0.0.1:{p}" for p in (roster_port, gateway_port, clever_port))
    database = tmp_path / "roster.db"
    shutil.copyfile(sqlite_template, database)
    settings = Settings(
        database_url=f"sqlite:///{database}",
        data_dir=tmp_path / "data",
        run_worker=True,
        worker_poll_seconds=0.2,
        run_scheduler=False,
        console_oidc_issuer=gateway,
        console_oidc_client_id="console",
        console_oidc_client_secret=CONSOLE_SECRET,
        console_oidc_redirect_uri=f"{roster}/console/auth/callback",
    )
    engine = make_engine(settings.database_url)
    with session_scope(engine) as session:
        session.add(District(id="d1", name="District d1", clever_district_id=CLEVER_DISTRICT))
        _, resolver = create_api_key(session=session, name="gateway", scopes=["resolve"], district_id=None)
    engine.dispose()
    seed = Seed()
    seed.add_district(CLEVER_DISTRICT, "District d1")
    seed.add_user(SimUser(DANA, CLEVER_DISTRICT, "district_admin", "Dana", "Admin", "dana@d1.example"))
    seed.add_user(SimUser(ADA, CLEVER_DISTRICT, "student", "Ada", "Student", "ada@d1.example", "5"))
    seed.add_app(
        SimApp("rl-clever", "rl-clever-secret", [f"{gateway}/callback/clever/rocketlit"], "RocketLit")
    )
    gateway_settings = GatewaySettings(
        issuer=gateway,
        data_dir=tmp_path / "gateway",
        clever_authorize_url=f"{clever}/oauth/authorize",
        clever_token_url=f"{clever}/oauth/tokens",
        clever_api_url=clever,
        roster_api_url=roster,
        roster_api_key=resolver,
        rocketlit={
            "display_name": "RocketLit",
            "clever_client_id": "rl-clever",
            "clever_client_secret": "rl-clever-secret",
            "clever_redirect_uri": f"{gateway}/callback/clever/rocketlit",
            "clients": [console_client(roster, client_id="console", secret=CONSOLE_SECRET)],
        },
    )
    (tmp_path / "gateway").mkdir()
    servers = [
        _serve(create_app(settings), roster_port, "roster-api"),
        _serve(create_sim(seed), clever_port, "clever-sim"),
        _serve(create_gateway(gateway_settings), gateway_port, "sso-gateway"),
    ]
    try:
        yield {"base": roster, "gateway": gateway}
    finally:
        for server, _ in servers:
            server.should_exit = True
        for _, thread in servers:
            thread.join(timeout=10)


def test_district_admin_logs_in_with_clever(clever_stack: dict[str, Any], page: Page) -> None:
    """A Clever district admin lands in their district's console and does the roster work there (errors,
    fix, preview, apply, a hold reviewed and approved); a student is refused with a reference."""
    base = clever_stack["base"]
    page.goto(f"{base}/console/login")
    _check(page, "clever-1-sign-in")
    page.get_by_role("link", name="Log in with Clever").click()
    page.get_by_role("link", name=re.compile(r"Dana Admin \(district_admin")).click()
    page.wait_for_url(f"{base}/console/d/d1")
    expect(page.locator("h1")).to_have_text("Overview")
    expect(page.locator("body")).to_contain_text("District d1")
    _check(page, "clever-2-overview")
    _import_flow(page, base, "clever-a-")  # the district admin's own roster work
    page.get_by_role("link", name="Overview", exact=True).click()
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/console/login"))
    # the gateway's session can be ended too (a shared computer): it asks first, then comes back
    page.get_by_role("link", name="Log out of Clever on this device").click()
    expect(page.locator("body")).to_contain_text("Log out of the district console on this device?")
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{base}/console/login")

    # another person at another browser (no Clever or gateway session): a student
    page.context.clear_cookies()
    page.reload()
    page.get_by_role("link", name="Log in with Clever").click()
    page.get_by_role("link", name=re.compile(r"Ada Student \(student")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "The district console is for district administrators"
    )
    expect(page.locator(".reference code")).to_have_text(re.compile(r"^LA-"))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "clever-3-student-refused.png"), full_page=True)
