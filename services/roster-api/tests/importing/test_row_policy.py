"""The row policy (`sync.on_row_errors`), on SQLite and PostgreSQL: under `skip`, the rows with errors
are left out and listed, what they name stays exactly as stored, and the rest of the file is applied;
under `reject` (the default) the same file is rejected; a file-level error rejects under `skip` too."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session

from roster_api.jobs.worker import ImportWorker
from roster_api.models import ImportRun
from roster_api.settings import Settings

from .import_rows import HEADER, csv_bytes, student

ART = {"class_id": "cls-2", "class_name": "Grade 3 Art"}
# 20 students in cls-1; students 5 and 6 are also in cls-2
FIRST = [student(n) for n in range(1, 21)] + [student(5, **ART), student(6, **ART)]


def _second() -> list[dict[str, str]]:
    """Student 3 renamed, student 20 gone, student 21 new, and one bad row: student 5 with a broken
    email and a new first name, no longer in cls-2 (what a good row of it would change)."""
    rows = [student(n) for n in range(1, 20) if n not in (3, 5)]
    rows.append(student(3, student_first_name="Renamed"))
    rows.append(student(21))
    rows.append(student(6, **ART))
    rows.append(student(5, student_email="not-an-email", student_first_name="Changed"))
    return rows


@pytest.fixture
def make(
    create_district: Callable[..., dict[str, Any]], make_key: Callable[..., str]
) -> Callable[[str], dict[str, str]]:
    """Creates district d1 with the given row policy; returns a writer key's headers."""

    def create(policy: str) -> dict[str, str]:
        create_district(
            "d1",
            licenses={"rocketlit": {"seats": 1000}, "innerorbit": {"seats": 1000}},
            sync={"on_row_errors": policy},
        )
        return {"Authorization": f"Bearer {make_key('roster:write', 'roster:read', district='d1')}"}

    return create


@pytest.fixture
def worker(roster_engine: sa.Engine, roster_settings: Settings) -> ImportWorker:
    return ImportWorker(engine=roster_engine, settings=roster_settings)


def _import(client: TestClient, headers: dict[str, str], worker: ImportWorker, data: bytes) -> ImportRun:
    response = client.post(
        "/v1/districts/d1/imports", files={"file": ("roster.csv", data, "text/csv")}, headers=headers
    )
    assert response.status_code == 202, response.text
    worker.run_until_idle()
    with Session(worker.engine) as session:
        run = session.get(ImportRun, response.json()["id"])
        assert run is not None
        return run


def _state(engine: sa.Engine) -> dict[str, Any]:
    """Students (email -> (first name, active)) and enrollments ((class, email) -> active)."""
    with engine.connect() as conn:
        people = conn.execute(sa.text("select email, first_name, active from person where role = 'student'"))
        links = conn.execute(
            sa.text(
                "select e.class_id, p.email, e.active from enrollment e join person p on p.id = e.person_id"
            )
        )
        return {
            "students": {email: (first, bool(active)) for email, first, active in people},
            "enrollments": {(cls, email): bool(active) for cls, email, active in links},
        }


def _key(n: int) -> str:
    """The student's roster key (their Clever ID, as import_rows.student gives it)."""
    return f"{n:024x}"


def _email(n: int) -> str:
    return f"kid{n}@springfield.example.org"


def test_skip_leaves_the_bad_rows_people_as_stored_and_applies_the_rest(
    make: Callable[[str], dict[str, str]], client: TestClient, worker: ImportWorker
) -> None:
    writer = make("skip")
    assert _import(client, writer, worker, csv_bytes(FIRST)).status == "applied"
    before = _state(worker.engine)
    assert before["enrollments"][("cls-2", _email(5))] is True

    run = _import(client, writer, worker, csv_bytes(_second()))
    assert run.status == "applied", (run.report or {}).get("hold")
    report = run.report or {}
    assert report["error_count"] == 0
    assert report["skipped_row_count"] == 1
    [skipped] = report["skipped_rows"]
    assert (skipped["line"], skipped["code"]) == (len(_second()) + 1, "INVALID_EMAIL")  # the last row
    warned = [w for w in report["warnings"] if w["line"] == skipped["line"]]
    assert [w["message"].endswith("The row was skipped.") for w in warned] == [True]

    after = _state(worker.engine)
    assert after["students"][_email(5)] == before["students"][_email(5)] == ("Kid5", True)
    assert after["enrollments"][("cls-1", _email(5))] is True
    assert after["enrollments"][("cls-2", _email(5))] is True  # not deactivated by the skipped row
    assert after["students"][_email(3)] == ("Renamed", True)
    assert after["students"][_email(20)] == ("Kid20", False)
    assert after["students"][_email(21)] == ("Kid21", True)
    assert after["enrollments"][("cls-1", _email(21))] is True

    # the changes the import lists are what it applied: nothing of the skipped row's student
    listed = client.get(f"/v1/imports/{run.id}/changes", headers=writer, params={"limit": 500}).json()
    changed = {(i["entity"], i["kind"], i["id"]) for i in listed["items"] if i["entity"] != "account"}
    assert changed == {
        ("student", "updated", _key(3)),
        ("student", "deactivated", _key(20)),
        ("student", "created", _key(21)),
        ("enrollment", "created", f"cls-1 / {_key(21)}"),
        ("enrollment", "deactivated", f"cls-1 / {_key(20)}"),
    }
    assert _key(5) not in client.get(f"/v1/imports/{run.id}/changes.csv", headers=writer).text


def test_reject_is_the_default_and_rejects_the_same_file(
    make: Callable[[str], dict[str, str]], client: TestClient, worker: ImportWorker
) -> None:
    writer = make("reject")
    assert _import(client, writer, worker, csv_bytes(FIRST)).status == "applied"
    before = _state(worker.engine)
    run = _import(client, writer, worker, csv_bytes(_second()))
    assert run.status == "rejected"
    assert "skipped_rows" not in (run.report or {})
    assert _state(worker.engine) == before
    district = client.get("/v1/districts/d1", headers=writer)
    assert district.json()["sync"]["on_row_errors"] == "reject"


def test_a_file_level_error_rejects_under_skip_too(
    make: Callable[[str], dict[str, str]], client: TestClient, worker: ImportWorker
) -> None:
    writer = make("skip")
    assert _import(client, writer, worker, csv_bytes(FIRST)).status == "applied"
    before = _state(worker.engine)
    header = [h for h in HEADER if h != "class_name"]  # a required column missing
    run = _import(client, writer, worker, csv_bytes(_second(), header=header))
    assert run.status == "rejected"
    assert _state(worker.engine) == before


def test_the_setting_takes_only_reject_or_skip(
    make: Callable[[str], dict[str, str]], client: TestClient, admin_headers: dict[str, str]
) -> None:
    make("reject")
    for value, code in (("skip", 200), ("ignore", 422), (True, 422)):
        answer = client.patch(
            "/v1/districts/d1", json={"sync": {"on_row_errors": value}}, headers=admin_headers
        )
        assert answer.status_code == code, answer.text
    assert client.get("/v1/districts/d1", headers=admin_headers).json()["sync"]["on_row_errors"] == "skip"
