"""The console's pages over a real roster: upload with errors, preview, apply, roster, logins, SFTP."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from roster_api.importing.run import run_import
from roster_api.models import District, ImportRun, SftpCredential

from .helpers import BAD_CSV, GOOD_CSV, csrf_of

IMPORT_URL = re.compile(r"/console/d/d1/imports/(imp_[0-9a-z]+)")


def _upload(client: TestClient, text: str, mode: str, engine: sa.Engine, settings: Any) -> tuple[str, str]:
    """Uploads through the form, runs the queued import (the worker is off in tests), returns its page."""
    token = csrf_of(client.get("/console/d/d1/upload").text)
    response = client.post(
        "/console/d/d1/upload",
        data={"csrf_token": token, "mode": mode},
        files={"file": ("roster.csv", text.encode(), "text/csv")},
    )
    assert response.status_code == 303, response.text
    match = IMPORT_URL.search(response.headers["location"])
    assert match
    import_id = match.group(1)
    run_import(engine=engine, settings=settings, import_id=import_id)
    page = client.get(f"/console/d/d1/imports/{import_id}")
    assert page.status_code == 200
    return import_id, page.text


def test_upload_with_errors_then_fix_preview_and_apply(
    as_d1_admin: TestClient, roster_engine: sa.Engine, console_app: Any
) -> None:
    settings = console_app.state.settings
    bad_id, bad = _upload(as_d1_admin, BAD_CSV, "preview", roster_engine, settings)
    assert "rejected" in bad
    assert "Errors (" in bad
    assert "<td>3</td>" in bad  # the line of the bad row
    csv_errors = as_d1_admin.get(f"/console/d/d1/imports/{bad_id}/errors.csv")
    assert csv_errors.status_code == 200
    assert csv_errors.text.startswith("severity,line,column")
    good_id, good = _upload(as_d1_admin, GOOD_CSV, "preview", roster_engine, settings)
    assert "validated" in good
    assert "Apply this file" in good
    changes_csv = as_d1_admin.get(f"/console/d/d1/imports/{good_id}/changes.csv")
    assert changes_csv.status_code == 200
    assert "Sam Lee" in changes_csv.text
    received = as_d1_admin.get(f"/console/d/d1/imports/{good_id}/file")
    assert received.text == GOOD_CSV
    with Session(roster_engine) as session:
        assert session.get(ImportRun, good_id).dry_run  # type: ignore[union-attr]
    token = csrf_of(good)
    applied = as_d1_admin.post(f"/console/d/d1/imports/{good_id}/apply", data={"csrf_token": token})
    assert applied.status_code == 303
    match = IMPORT_URL.search(applied.headers["location"])
    assert match
    assert match.group(1) != good_id
    run_import(engine=roster_engine, settings=settings, import_id=match.group(1))
    final = as_d1_admin.get(applied.headers["location"])
    assert "applied" in final.text
    history = as_d1_admin.get("/console/d/d1/imports?status=applied")
    assert match.group(1) in history.text
    assert good_id not in history.text
    # the roster now holds the students: search by name, open the person
    found = as_d1_admin.get("/console/d/d1/roster", params={"q": "Lee", "role": "student"})
    assert "Lee, Sam" in found.text
    person = re.search(r'href="(/console/d/d1/people/student/[^"]+)"', found.text)
    assert person
    page = as_d1_admin.get(person.group(1))
    assert page.status_code == 200
    assert "PE 1" in page.text
    assert "rocketlit" in page.text
    school = as_d1_admin.get("/console/d/d1/roster")
    assert "Riverside High" in school.text
    overview = as_d1_admin.get("/console/d/d1")
    assert overview.status_code == 200
    assert "A roster applied" in overview.text


def test_rotating_sftp_shows_the_password_once(as_support: TestClient, roster_engine: sa.Engine) -> None:
    token = csrf_of(as_support.get("/console/d/d1/settings").text)
    created = as_support.post("/console/d/d1/settings/sftp", data={"csrf_token": token})
    assert created.status_code == 200
    first = re.search(r'id="new-password">([^<]+)<', created.text)
    assert first
    with Session(roster_engine) as session:
        credential = session.exec(select(SftpCredential)).one()
    rotated = as_support.post(
        f"/console/d/d1/settings/sftp/{credential.id}/rotate", data={"csrf_token": token}
    )
    second = re.search(r'id="new-password">([^<]+)<', rotated.text)
    assert second
    assert second.group(1) != first.group(1)
    again = as_support.get("/console/d/d1/settings")
    assert second.group(1) not in again.text
    assert "Rotate password" in again.text


def test_login_lookup_explains_and_stays_in_its_district(
    as_support: TestClient, roster_engine: sa.Engine, make_key: Any
) -> None:
    # a failed login of a student of d1 (Clever district linked), recorded by the resolve API
    token = csrf_of(as_support.get("/console/d/d1/settings").text)
    clever = "5a1b2c3d4e5f60718293a4b5"
    as_support.post(
        "/console/d/d1/settings/district",
        data={"csrf_token": token, "clever_district_id": clever, "seats_rocketlit": "10"},
    )
    resolver = {"Authorization": f"Bearer {make_key('resolve', name='gateway')}"}
    body = {
        "product": "rocketlit",
        "clever_district_id": clever,
        "clever_user_id": "6a1b2c3d4e5f60718293a4b5",
        "clever_role": "student",
        "email": "nobody@example.org",
    }
    refused = as_support.post("/v1/resolve", json=body, headers=resolver)
    assert refused.status_code == 422, refused.text
    reference = refused.json()["error"]["details"][0]["reference"]
    listed = as_support.get("/console/d/d1/logins?outcome=failure")
    assert reference in listed.text
    page = as_support.get("/console/d/d1/logins", params={"reference": reference.lower()})
    assert f"Login {reference}" in page.text
    assert "failure" in page.text
    elsewhere = as_support.get("/console/d/d2/logins", params={"reference": reference})
    assert "No login with the reference" in elsewhere.text
    global_lookup = as_support.get("/console/lookup", params={"reference": reference})
    assert f"Login {reference}" in global_lookup.text


def test_a_held_import_is_reviewed_and_approved(
    as_d1_admin: TestClient, roster_engine: sa.Engine, console_app: Any
) -> None:
    settings = console_app.state.settings
    first, _ = _upload(as_d1_admin, GOOD_CSV, "apply", roster_engine, settings)
    with Session(roster_engine) as session:
        assert session.get(ImportRun, first).status == "applied"  # type: ignore[union-attr]
    # one of two students left: half the students deactivated, over the 10 % hold threshold
    smaller = "\n".join(GOOD_CSV.splitlines()[:2]) + "\n"
    held_id, held = _upload(as_d1_admin, smaller, "apply", roster_engine, settings)
    assert "Held for review" in held
    assert "Approve and apply" in held
    listed = as_d1_admin.get("/console/d/d1/imports?status=held")
    assert held_id in listed.text
    token = csrf_of(held)
    forged = as_d1_admin.post(f"/console/d/d1/imports/{held_id}/approve", data={"csrf_token": "x"})
    assert forged.status_code == 403
    approved = as_d1_admin.post(f"/console/d/d1/imports/{held_id}/approve", data={"csrf_token": token})
    assert approved.status_code == 303
    run_import(engine=roster_engine, settings=settings, import_id=held_id)
    with Session(roster_engine) as session:
        run = session.get(ImportRun, held_id)
    assert run is not None
    assert run.status == "applied"
    assert run.decided_by == "d1-admin"
    again = as_d1_admin.post(f"/console/d/d1/imports/{held_id}/discard", data={"csrf_token": token})
    assert again.status_code == 409
    assert "not held" in again.text


def test_support_creates_and_purges_a_district(as_support: TestClient, roster_engine: sa.Engine) -> None:
    token = csrf_of(as_support.get("/console/districts").text)
    created = as_support.post("/console/districts", data={"csrf_token": token, "id": "d3", "name": "Three"})
    assert created.status_code == 303
    assert created.headers["location"].startswith("/console/d/d3/settings")
    duplicate = as_support.post("/console/districts", data={"csrf_token": token, "id": "d3", "name": "Again"})
    assert duplicate.status_code == 409
    bad = as_support.post("/console/districts", data={"csrf_token": token, "id": "Not A Slug", "name": "x"})
    assert bad.status_code == 422
    wrong = as_support.post("/console/d/d3/purge", data={"csrf_token": token, "confirm": "d2"})
    assert wrong.status_code == 422
    assert "Type the district id" in wrong.text
    with Session(roster_engine) as session:
        assert session.get(District, "d3") is not None
    purged = as_support.post("/console/d/d3/purge", data={"csrf_token": token, "confirm": "d3"})
    assert purged.status_code == 303
    with Session(roster_engine) as session:
        assert session.get(District, "d3") is None
    assert as_support.get("/console/d/d3").status_code == 404
