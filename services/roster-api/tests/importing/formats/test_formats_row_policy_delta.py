"""The `skip` row policy with a OneRoster delta package, over HTTP and the worker, on SQLite and
PostgreSQL: the delta's rows with errors are left out and listed with file and line; the people and
classes they name are neither updated nor deactivated (even by a good row of the same delta that would
change them), and the delta's other rows apply. Under `reject` the same delta changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from roster_api.jobs.worker import ImportWorker
from roster_api.settings import Settings

from .helpers import files_of, zip_bytes

MANIFEST = (
    b"propertyName,value\r\nmanifest.version,1.0\r\noneroster.version,1.1\r\nfile.users,delta\r\n"
    b"file.classes,delta\r\nfile.enrollments,delta\r\nfile.orgs,absent\r\n"
)
USERS = b"sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,givenName,"
USERS += b"familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password\r\n"
CLASSES = b"sourcedId,status,dateLastModified,title,grades,courseSourcedId,classCode,classType,location,"
CLASSES += b"schoolSourcedId,termSourcedIds,subjects,subjectCodes,periods\r\n"
ENROLLMENTS = b"sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,"
ENROLLMENTS += b"primary,beginDate,endDate\r\n"
WHEN = b"2026-12-01T00:00:00Z"


def _delta() -> tuple[bytes, list[tuple[str, int]]]:
    """The fixture district (C1: T1; S1, S2. C2: T2, T3; S3, S4. C3: T3; S4, S5) patched.
    Good rows: S1 renamed, T3 renamed, S6 new in C1, S3 out of C2 (their only class), S2 out of C1
    (theirs too), S5 out of C3 (theirs too). Bad rows: S2 with an empty givenName (users.csv line 3),
    S4 with a status a delta cannot have (line 4), C3 renamed at an unknown school (classes.csv line
    2), T3 enrolled as a student (enrollments.csv line 6). So the good rows about S2, C3 and T3 do
    not apply: they would update or deactivate what a skipped row names."""
    users = USERS + b"\r\n".join(
        [
            b"S1,active," + WHEN + b",true,sch-1,student,arnold,,Arnie,Perlstein,,1001,,,,,03,",
            b"S2,active," + WHEN + b",true,sch-1,student,wli,,,Li,,1002,,,,,KG,",
            b"S4,deleted," + WHEN + b",true,sch-2,student,aroe,,Ann,Roe,,1004,,,,,11,",
            b"S6,active," + WHEN + b",true,sch-1,student,ssix,,Sam,Six,,1006,,,,,03,",
            b"T3,active," + WHEN + b",true,sch-2,teacher,jpinkman,,Jess,Pinkman,,E300,,,,,,",
        ]
    )
    classes = CLASSES + b"C3,active," + WHEN + b",Art II,11,crs-3,ART-1,scheduled,Studio,sch-9,term-1,art,,4"
    enrollments = ENROLLMENTS + b"\r\n".join(
        [
            b"E20,active," + WHEN + b",C1,sch-1,S6,student,,,",
            b"E6,tobedeleted," + WHEN + b",C2,sch-2,S3,student,,,",
            b"E3,tobedeleted," + WHEN + b",C1,sch-1,S2,student,,,",
            b"E10,tobedeleted," + WHEN + b",C3,sch-2,S5,student,,,",
            b"E21,active," + WHEN + b",C1,sch-1,T3,student,,,",
        ]
    )
    files = {
        "manifest.csv": MANIFEST,
        "users.csv": users + b"\r\n",
        "classes.csv": classes + b"\r\n",
        "enrollments.csv": enrollments + b"\r\n",
    }
    bad_rows = [("classes.csv", 2), ("enrollments.csv", 6), ("users.csv", 3), ("users.csv", 4)]
    return zip_bytes(files), bad_rows


@pytest.fixture
def make(
    create_district: Callable[..., dict[str, Any]], make_key: Callable[..., str]
) -> Callable[[str], dict[str, str]]:
    def create(policy: str) -> dict[str, str]:
        create_district(
            "d1",
            licenses={"rocketlit": {"seats": 100}},
            sync={"on_row_errors": policy, "hold_deactivate_pct": 100, "hold_update_pct": 100},
        )
        return {"Authorization": f"Bearer {make_key('roster:write', 'roster:read', district='d1')}"}

    return create


def _import(
    client: TestClient, headers: dict[str, str], settings: Settings, engine: sa.Engine, body: bytes
) -> Any:
    response = client.post(
        "/v1/districts/d1/imports", content=body, headers={**headers, "Content-Type": "application/zip"}
    )
    assert response.status_code == 202, response.text
    ImportWorker(engine=engine, settings=settings).run_until_idle()
    done = client.get(f"/v1/imports/{response.json()['id']}", headers=headers)
    assert done.status_code == 200
    return done.json()


def _state(engine: sa.Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        people = conn.execute(sa.text("select sis_id, role, first_name, active from person"))
        classes = conn.execute(sa.text("select class_id, name, active from section"))
        links = [
            conn.execute(
                sa.text(
                    f"select l.class_id, p.sis_id, l.active from {table} l "  # noqa: S608
                    "join person p on p.id = l.person_id"
                )
            ).all()
            for table in ("enrollment", "section_teacher")
        ]
        return {
            "people": {sis: (role, first, bool(active)) for sis, role, first, active in people},
            "classes": {cid: (name, bool(active)) for cid, name, active in classes},
            "enrollments": {(c, s): bool(a) for c, s, a in links[0]},
            "class_teachers": {(c, s): bool(a) for c, s, a in links[1]},
        }


def test_skip_applies_a_delta_without_its_bad_rows_and_keeps_what_they_name(
    make: Callable[[str], dict[str, str]],
    client: TestClient,
    roster_settings: Settings,
    roster_engine: sa.Engine,
) -> None:
    writer = make("skip")
    first = _import(client, writer, roster_settings, roster_engine, zip_bytes(files_of("oneroster11")))
    assert first["status"] == "applied", first["report"].get("errors")
    before = _state(roster_engine)
    body, bad_rows = _delta()

    run = _import(client, writer, roster_settings, roster_engine, body)
    report = run["report"]
    assert run["status"] == "applied", (report.get("errors"), report.get("hold"))
    assert report["mode"] == "delta"
    assert report["error_count"] == 0
    assert sorted((p["file"], p["line"]) for p in report["skipped_rows"]) == bad_rows
    assert report["skipped_row_count"] == len(bad_rows)

    after = _state(roster_engine)
    # what the skipped rows name: as stored, though good rows of the delta would update (T3) or
    # deactivate them (S2 and their link to C1, C3's link to S5)
    for sis in ("S2", "S4", "T3", "S5"):  # S5: C3 is their only class
        assert after["people"][sis] == before["people"][sis]
    assert after["people"]["T3"] == ("teacher", "Jesse", True)
    assert after["classes"]["C3"] == before["classes"]["C3"] == ("Art", True)
    for link in (("C1", "S2"), ("C2", "S4"), ("C3", "S4"), ("C3", "S5")):
        assert after["enrollments"][link] is True
    assert after["class_teachers"][("C3", "T3")] is True
    assert ("C1", "T3") not in after["enrollments"]
    # every other row applies: an update, a new student, and a removal that deactivates
    assert after["people"]["S1"] == ("student", "Arnie", True)
    assert after["people"]["S6"] == ("student", "Sam", True)
    assert after["enrollments"][("C1", "S6")] is True
    assert after["enrollments"][("C2", "S3")] is False
    assert after["people"]["S3"] == ("student", "Jane", False)
    # and nothing the delta does not list changes
    unlisted = {"T1", "T2"}
    assert {s: after["people"][s] for s in unlisted} == {s: before["people"][s] for s in unlisted}
    assert after["classes"]["C1"] == before["classes"]["C1"]
    assert after["classes"]["C2"] == before["classes"]["C2"]


def test_reject_rejects_the_same_delta(
    make: Callable[[str], dict[str, str]],
    client: TestClient,
    roster_settings: Settings,
    roster_engine: sa.Engine,
) -> None:
    writer = make("reject")
    first = _import(client, writer, roster_settings, roster_engine, zip_bytes(files_of("oneroster11")))
    assert first["status"] == "applied", first["report"].get("errors")
    before = _state(roster_engine)
    body, bad_rows = _delta()
    run = _import(client, writer, roster_settings, roster_engine, body)
    assert run["status"] == "rejected"
    assert "skipped_rows" not in run["report"]
    assert sorted((p["file"], p["line"]) for p in run["report"]["errors"]) == bad_rows
    assert _state(roster_engine) == before
