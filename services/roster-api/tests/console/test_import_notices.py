"""The upload's notice ("Importing the file.") shows while the import is under way, not on a page that
opens after it ended (it ran, or was held, before the page first loaded)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from roster_api.console.imports_pages import IMPORTING
from roster_api.importing.run import run_import

from .helpers import GOOD_CSV, csrf_of
from .test_console_pages import IMPORT_URL


def test_the_upload_notice_shows_only_while_the_import_is_under_way(
    as_d1_admin: TestClient, roster_engine: sa.Engine, console_app: Any
) -> None:
    token = csrf_of(as_d1_admin.get("/console/d/d1/upload").text)
    response = as_d1_admin.post(
        "/console/d/d1/upload",
        data={"csrf_token": token, "mode": "apply"},
        files={"file": ("roster.csv", GOOD_CSV.encode(), "text/csv")},
    )
    assert response.status_code == 303
    location = response.headers["location"]
    match = IMPORT_URL.search(location)
    assert match
    queued = as_d1_admin.get(location)
    assert IMPORTING in queued.text
    assert 'id="progress"' in queued.text
    run_import(engine=roster_engine, settings=console_app.state.settings, import_id=match.group(1))
    ended = as_d1_admin.get(location)  # the same signed link, opened after the import ended
    assert "applied" in ended.text
    assert IMPORTING not in ended.text
    assert 'id="progress"' not in ended.text
