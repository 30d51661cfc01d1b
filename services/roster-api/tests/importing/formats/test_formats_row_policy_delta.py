"""The `skip` row policy with a OneRoster delta package, over HTTP and the worker, on SQLite and
PostgreSQL: the delta's rows with errors are left out and listed with file and line; the people and
classes they name are neither updated nor deactivated (even by a good row of the same delta that would
change them), and the delta's other rows apply. Under `reject` the same delta changes nothing."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from fastapi.testclient import TestClient

from roster_api.settings import Settings

from .helpers import files_of, zip_bytes
from .row_policy import import_zip, roster_state

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


def test_skip_applies_a_delta_without_its_bad_rows_and_keeps_what_they_name(
    policy_district: Callable[[str], dict[str, str]],
    client: TestClient,
    roster_settings: Settings,
    roster_engine: sa.Engine,
) -> None:
    writer = policy_district("skip")
    first = import_zip(client, writer, roster_settings, roster_engine, zip_bytes(files_of("oneroster11")))
    assert first["status"] == "applied", first["report"].get("errors")
    before = roster_state(roster_engine)
    body, bad_rows = _delta()

    run = import_zip(client, writer, roster_settings, roster_engine, body)
    report = run["report"]
    assert run["status"] == "applied", (report.get("errors"), report.get("hold"))
    assert report["mode"] == "delta"
    assert report["error_count"] == 0
    assert sorted((p["file"], p["line"]) for p in report["skipped_rows"]) == bad_rows
    assert report["skipped_row_count"] == len(bad_rows)

    after = roster_state(roster_engine)
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
    policy_district: Callable[[str], dict[str, str]],
    client: TestClient,
    roster_settings: Settings,
    roster_engine: sa.Engine,
) -> None:
    writer = policy_district("reject")
    first = import_zip(client, writer, roster_settings, roster_engine, zip_bytes(files_of("oneroster11")))
    assert first["status"] == "applied", first["report"].get("errors")
    before = roster_state(roster_engine)
    body, bad_rows = _delta()
    run = import_zip(client, writer, roster_settings, roster_engine, body)
    assert run["status"] == "rejected"
    assert "skipped_rows" not in run["report"]
    assert sorted((p["file"], p["line"]) for p in run["report"]["errors"]) == bad_rows
    assert roster_state(roster_engine) == before
