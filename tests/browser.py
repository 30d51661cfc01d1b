"""What the browser tests share: Debian's Chromium (Playwright's own browser download does not work here),
the flags it runs with, and the rule that a missing Chromium skips them locally but fails them when
REQUIRE_BROWSER_TESTS=1 (.ci/run)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_chromium() -> None:
    """Called at the top of a browser test module, before it imports playwright."""
    if CHROMIUM.exists():
        return
    if os.environ.get("REQUIRE_BROWSER_TESTS", "") in {"1", "true", "yes"}:
        pytest.fail(
            "REQUIRE_BROWSER_TESTS=1 but /usr/bin/chromium is missing: apt-get install -y chromium",
            pytrace=False,
        )
    pytest.skip(
        "browser tests need Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)",
        allow_module_level=True,
    )
