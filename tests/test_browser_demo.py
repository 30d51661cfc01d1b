"""End to end: `scripts/devrun.py` (what `make run` starts) on random free ports, driven by headless
Chromium through both login paths and the failure path, plus the printed sftp command.

Runs when /usr/bin/chromium exists (Debian's `chromium` package; Playwright's own browser download does
not work here) and is skipped otherwise, unless REQUIRE_BROWSER_TESTS=1 (.ci/run), which makes it
mandatory. Screenshots of every step are kept in test-artifacts/browser/."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from roster_harness import free_ports

from .browser import CHROMIUM, CHROMIUM_ARGS, require_chromium

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "browser"
REFERENCE_RE = re.compile(r"\bLA-[0-9A-Z]{4,6}-[0-9A-Z]{4,6}\b")

require_chromium()

from playwright.sync_api import BrowserContext, Page, Playwright, expect, sync_playwright  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The whole demo stack, started exactly as `make run` does, on free ports in a temporary var dir."""
    var_dir = tmp_path_factory.mktemp("devrun")
    ready = var_dir / "ready.json"
    names = ["ROSTER", "SFTP", "GATEWAY", "CLEVER", "ROCKETLIT", "INNERORBIT"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROSTER_", "SSO_", "DEMO_", "DEVRUN_"))}
    env.update(
        {f"DEVRUN_{name}_PORT": str(port) for name, port in zip(names, free_ports(len(names)), strict=True)}
    )
    env.update({"DEVRUN_VAR_DIR": str(var_dir), "DEVRUN_READY_FILE": str(ready), "DEVRUN_STUDENTS": "40"})
    output = (var_dir / "devrun.out").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "scripts.devrun"],
        cwd=ROOT,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    started = time.monotonic()
    try:
        while not ready.exists():
            if proc.poll() is not None:
                pytest.fail(f"devrun exited with {proc.returncode}:\n{_read(var_dir / 'devrun.out')}")
            if time.monotonic() - started > 120:
                pytest.fail(f"the demo did not start within 120 s:\n{_read(var_dir / 'devrun.out')}")
            time.sleep(0.3)
        info: dict[str, Any] = json.loads(ready.read_text(encoding="utf-8"))
        info["var_dir"] = var_dir
        info["output"] = var_dir / "devrun.out"
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) == 6, "roster-api, its SFTP intake, clever-sim, the gateway, two frontends"
        yield info
    finally:
        if proc.poll() is None:
            children = psutil.Process(proc.pid).children(recursive=True)
            proc.send_signal(signal.SIGINT)  # what Ctrl-C does
            try:
                code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
            finally:
                output.close()
            _, alive = psutil.wait_procs(children, timeout=5)
            assert not alive, f"processes left running after Ctrl-C: {[p.pid for p in alive]}"
            assert code == 0, _read(var_dir / "devrun.out")
            assert "Stopped." in _read(var_dir / "devrun.out")


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")[-5000:] if path.exists() else ""


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture
def browser(playwright: Playwright, tmp_path: Path) -> Iterator[BrowserContext]:
    """A fresh Chromium profile per test: no cookies from an earlier login."""
    context = playwright.chromium.launch_persistent_context(
        str(tmp_path / "profile"),
        executable_path=str(CHROMIUM),
        headless=True,
        args=CHROMIUM_ARGS,
    )
    context.set_default_timeout(20_000)
    try:
        yield context
    finally:
        context.close()


def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _roster_student(info: dict[str, Any], name: str) -> dict[str, str]:
    with Path(info["roster"]["path"]).open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if f"{row['student_first_name']} {row['student_last_name']}" == name:
                return row
    raise AssertionError(f"{name} is not in the demo roster")


def _expect_logged_in(page: Page, info: dict[str, Any], name: str, product: str) -> None:
    row = _roster_student(info, name)
    expect(page.locator("#who-name")).to_have_text(name)
    expect(page.locator("#who-role")).to_have_text("Student")
    expect(page.locator("#who-school")).to_have_text(row["school_name"])
    expect(page.locator("#who-district")).to_have_text(info["district_id"])
    expect(page.locator("#who-product")).to_have_text(product)


def test_browser_log_in_with_clever_lands_in_rocketlit(demo: dict[str, Any], browser: BrowserContext) -> None:
    page = browser.new_page()
    page.goto(demo["urls"]["rocketlit"])
    _shot(page, "rocketlit-1-home")
    page.get_by_role("link", name="Log in with Clever").click()
    # The Clever simulator's login: pick a demo student.
    student = demo["demo_students"][0]
    page.get_by_role("link", name=re.compile(re.escape(student) + r" \(student")).first.click()
    page.wait_for_url(demo["urls"]["rocketlit"] + "/")
    _shot(page, "rocketlit-2-logged-in")
    _expect_logged_in(page, demo, student, "RocketLit")

    # Logging out ends the local and the gateway session: the next login asks Clever again.
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(demo["urls"]["rocketlit"] + "/")
    expect(page.get_by_role("link", name="Log in with Clever")).to_be_visible()
    _shot(page, "rocketlit-3-logged-out")


def test_browser_clever_portal_instant_login_lands_in_innerorbit(
    demo: dict[str, Any], browser: BrowserContext
) -> None:
    page = browser.new_page()
    page.goto(demo["urls"]["clever_portal"])
    student = demo["demo_students"][1]
    page.get_by_role("link", name=re.compile(re.escape(student) + r" \(student")).first.click()
    _shot(page, "portal-1-apps")
    # The app icon: Clever sends a code with no state to InnerOrbit's Clever redirect URI on the gateway,
    # which restarts the login at Clever and then hands over to the InnerOrbit frontend.
    page.get_by_role("link", name="InnerOrbit").click()
    page.wait_for_url(demo["urls"]["innerorbit"] + "/")
    _shot(page, "portal-2-innerorbit")
    _expect_logged_in(page, demo, student, "InnerOrbit")


def test_browser_student_not_on_the_roster_gets_a_reference_support_can_explain(
    demo: dict[str, Any], browser: BrowserContext
) -> None:
    page = browser.new_page()
    page.goto(demo["urls"]["rocketlit"])
    page.get_by_role("link", name="Log in with Clever").click()
    page.get_by_role("link", name=re.compile(re.escape(demo["not_rostered"]) + r" \(student")).click()
    expect(page.get_by_text(re.compile(r"Reference code: LA-"))).to_be_visible()
    _shot(page, "not-rostered-1-error-page")
    text = page.inner_text("body")
    assert "RocketLit" in text
    found = REFERENCE_RE.search(text)
    assert found, f"no reference code on the page: {text[:500]}"
    # Nothing of the user's Clever identity is echoed on the page.
    assert "nora.notrostered" not in text.lower()

    response = httpx.get(
        f"{demo['urls']['roster_api']}/v1/login-attempts/{found.group(0)}",
        headers={"Authorization": f"Bearer {demo['admin_api_key']}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    attempt = response.json()
    assert attempt["outcome"] == "failure"
    assert attempt["reason"] == "no_account"
    assert attempt["product"] == "rocketlit"
    assert attempt["district_id"] == demo["district_id"]
    assert attempt["diagnosis"]


def test_demo_printed_sftp_command_uploads_a_changed_roster(demo: dict[str, Any]) -> None:
    """The exact command `make run` prints, in batch mode: upload, then the result file appears."""
    sftp = demo["sftp"]
    if shutil.which("sftp") is None:
        pytest.skip("the OpenSSH sftp client is not installed")
    batch = demo["var_dir"] / "sftp-batch"
    batch.write_text(f"put {sftp['changed_roster']} roster.csv\n", encoding="utf-8")
    *options, destination = sftp["command"].split()
    command = [*options, "-o", "BatchMode=yes", "-b", str(batch), destination]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    deadline = time.monotonic() + 60
    found = None
    while found is None and time.monotonic() < deadline:
        batch.write_text("ls -1 results\n", encoding="utf-8")
        listing = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False).stdout
        found = re.search(r"roster\.csv\.[^\s/]+\.txt", listing)
        if found is None:
            time.sleep(1)
    assert found is not None, "no result file appeared in results/ within 60 s"
    local = demo["var_dir"] / "result.txt"
    batch.write_text(f"get results/{found.group(0)} {local}\n", encoding="utf-8")
    subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    report = local.read_text(encoding="utf-8")
    assert "Status:   APPLIED" in report, report
