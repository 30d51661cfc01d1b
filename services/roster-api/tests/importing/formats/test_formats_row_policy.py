"""The `skip` row policy for OneRoster and Clever packages, over HTTP and the worker, on SQLite and
PostgreSQL: a package whose errors are all on rows is applied without those rows, which the report
lists with file and line; the people and classes they name keep their stored values, links and
status (a new person they name is not created), every other row applies, and the changes the import
lists are only what it applied. Under `reject` the same package is rejected; a file-level error
rejects under `skip` too."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from roster_api.settings import Settings

from .helpers import files_of, zip_bytes
from .row_policy import import_zip, roster_state


def _edit(
    data: bytes,
    key: str,
    changes: dict[str, dict[str, str]],
    add: list[dict[str, str]] | None = None,
    drop: set[str] | None = None,
) -> bytes:
    """The CSV with rows (by their `key` column) changed, dropped, and rows added at the end."""
    reader = csv.DictReader(io.StringIO(data.decode()))
    out = io.StringIO()
    writer = csv.DictWriter(out, reader.fieldnames or [], lineterminator="\n")
    writer.writeheader()
    for row in reader:
        if row[key] not in (drop or set()):
            writer.writerow({**row, **changes.get(row[key], {})})
    for row in add or []:
        writer.writerow(row)
    return out.getvalue().encode()


def _oneroster_with_bad_rows() -> tuple[bytes, list[tuple[str, int]]]:
    """Good rows: S1 renamed, T3 renamed, S4 no longer in C2, S6 new in C1. Bad rows: S2 with an empty
    givenName, C3 (renamed) at an unknown school, S3 and the new S7 enrolled in an unknown class."""
    files = files_of("oneroster11")
    first_names = {"S2": {"givenName": ""}, "S1": {"givenName": "Arnie"}, "T3": {"givenName": "Jess"}}
    s6 = {
        "sourcedId": "S6",
        "enabledUser": "true",
        "role": "student",
        "givenName": "Sam",
        "familyName": "Six",
    }
    s7 = {**s6, "sourcedId": "S7", "givenName": "Sue", "familyName": "Seven"}
    files["users.csv"] = _edit(files["users.csv"], "sourcedId", first_names, add=[s6, s7])
    files["classes.csv"] = _edit(
        files["classes.csv"], "sourcedId", {"C3": {"title": "Art II", "schoolSourcedId": "sch-9"}}
    )
    enroll = {"classSourcedId": "C1", "schoolSourcedId": "sch-1", "role": "student"}
    files["enrollments.csv"] = _edit(
        files["enrollments.csv"],
        "sourcedId",
        {},
        add=[
            {**enroll, "sourcedId": "E12", "userSourcedId": "S6"},
            {**enroll, "sourcedId": "E13", "userSourcedId": "S3", "classSourcedId": "C9"},
            {**enroll, "sourcedId": "E14", "userSourcedId": "S7", "classSourcedId": "C9"},
        ],
        drop={"E7"},
    )
    # users.csv: S2 on line 6; classes.csv: C3 on line 4; enrollments.csv: E13, E14 on lines 13, 14
    return zip_bytes(files), [
        ("classes.csv", 4),
        ("enrollments.csv", 13),
        ("enrollments.csv", 14),
        ("users.csv", 6),
    ]


def _clever_with_bad_rows() -> tuple[bytes, list[tuple[str, int]]]:
    """Good rows: S1 renamed, S4 no longer in C2, S6 new in C1. Bad rows: S2 with an empty
    First_name, C3 (renamed) with an unknown second teacher, S3 and the new S7 enrolled in an
    unknown section (S7's student row itself is good)."""
    files = files_of("clever2")
    s6 = {"School_id": "sch-1", "Student_id": "S6", "First_name": "Sam", "Last_name": "Six"}
    s7 = {**s6, "Student_id": "S7", "First_name": "Sue", "Last_name": "Seven"}
    files["students.csv"] = _edit(
        files["students.csv"],
        "Student_id",
        {"S2": {"First_name": ""}, "S1": {"First_name": "Arnie"}},
        add=[s6, s7],
    )
    files["sections.csv"] = _edit(
        files["sections.csv"], "Section_id", {"C3": {"Name": "Art II", "Teacher_2_id": "T9"}}
    )
    text = files["enrollments.csv"].decode().replace("sch-2,C2,S4\n", "")
    files["enrollments.csv"] = (text + "sch-1,C1,S6\nsch-1,C9,S3\nsch-1,C9,S7\n").encode()
    # students.csv: S2 on line 4; sections.csv: C3 on line 4; enrollments.csv: lines 8 and 9
    return zip_bytes(files), [
        ("enrollments.csv", 8),
        ("enrollments.csv", 9),
        ("sections.csv", 4),
        ("students.csv", 4),
    ]


LOGIN_ID = "5f0c1e2d3b4a59687f6e5d4c"
BIND = "update person set clever_id = :clever_id, clever_id_source = 'login' where sis_id = 'S3'"


def _bound(engine: sa.Engine) -> tuple[str, str]:
    with engine.connect() as conn:
        row = conn.execute(
            sa.text("select clever_id, clever_id_source from person where sis_id = 'S3'")
        ).one()
        return row[0], row[1]


PACKAGES = {
    "oneroster11": _oneroster_with_bad_rows,
    "clever2": _clever_with_bad_rows,
}


@pytest.mark.parametrize("package", PACKAGES)
def test_skip_applies_a_package_without_its_bad_rows_and_keeps_what_they_name(
    package: str,
    policy_district: Callable[[str], dict[str, str]],
    client: TestClient,
    roster_settings: Settings,
    roster_engine: sa.Engine,
) -> None:
    writer = policy_district("skip")
    first = import_zip(client, writer, roster_settings, roster_engine, zip_bytes(files_of(package)))
    assert first["status"] == "applied", first["report"].get("errors")
    with roster_engine.begin() as conn:  # S3 has logged in: Clever's id is bound to them
        conn.execute(sa.text(BIND), {"clever_id": LOGIN_ID})
    before = roster_state(roster_engine)
    body, bad_rows = PACKAGES[package]()

    run = import_zip(client, writer, roster_settings, roster_engine, body)
    report = run["report"]
    assert run["status"] == "applied", (report.get("errors"), report.get("hold"))
    assert report["error_count"] == 0
    assert [(p["file"], p["line"]) for p in report["skipped_rows"]] == bad_rows
    assert report["skipped_row_count"] == len(bad_rows)

    after = roster_state(roster_engine)
    # what the skipped rows name: as stored
    for sis in ("S2", "S3", "S5"):  # S5: C3 is their only class
        assert after["people"][sis] == before["people"][sis]
    assert after["classes"]["C3"] == before["classes"]["C3"] == ("Art", True)
    for link in (("C1", "S2"), ("C2", "S3"), ("C3", "S4"), ("C3", "S5")):
        assert after["enrollments"][link] is True
    assert after["class_teachers"][("C3", "T3")] is True
    assert "S7" not in after["people"]  # new, and named by a skipped row: not created
    assert _bound(roster_engine) == (LOGIN_ID, "login")
    # every other row applies
    assert after["people"]["S1"] == ("student", "Arnie", True)
    assert after["people"]["S6"] == ("student", "Sam", True)
    assert after["enrollments"][("C1", "S6")] is True
    assert after["enrollments"][("C2", "S4")] is False
    if package == "oneroster11":
        assert after["people"]["T3"] == ("teacher", "Jess", True)

    # the changes listed are what was applied, and nothing of what the skipped rows name
    listed = client.get(f"/v1/imports/{run['id']}/changes", headers=writer, params={"limit": 500}).json()
    changed = {(i["entity"], i["kind"], i["id"]) for i in listed["items"]}
    expected = {
        ("student", "updated", "sis:S1"),
        ("student", "created", "sis:S6"),
        ("enrollment", "created", "C1 / sis:S6"),
        ("enrollment", "deactivated", "C2 / sis:S4"),
    }
    if package == "oneroster11":
        expected.add(("teacher", "updated", "sis:T3"))
    assert {c for c in changed if c[0] != "account"} == expected
    assert [c[1] for c in changed if c[0] == "account"] == ["created"]  # S6's
    text = client.get(f"/v1/imports/{run['id']}/changes.csv", headers=writer).text
    for named in ("S2", "S3", "S7", "C3"):
        assert f"sis:{named}" not in text
        assert f"{named} /" not in text


@pytest.mark.parametrize("package", PACKAGES)
def test_reject_rejects_the_same_package_and_a_file_error_rejects_under_skip(
    package: str,
    policy_district: Callable[[str], dict[str, str]],
    client: TestClient,
    roster_settings: Settings,
    roster_engine: sa.Engine,
    admin_headers: dict[str, str],
) -> None:
    writer = policy_district("reject")
    assert import_zip(client, writer, roster_settings, roster_engine, zip_bytes(files_of(package)))[
        "status"
    ] == ("applied")
    before = roster_state(roster_engine)
    body, bad_rows = PACKAGES[package]()
    run = import_zip(client, writer, roster_settings, roster_engine, body)
    assert run["status"] == "rejected"
    assert "skipped_rows" not in run["report"]
    assert {(p["file"], p["line"]) for p in run["report"]["errors"]} == set(bad_rows)
    assert roster_state(roster_engine) == before

    patched = client.patch(
        "/v1/districts/d1", json={"sync": {"on_row_errors": "skip"}}, headers=admin_headers
    )
    assert patched.status_code == 200, patched.text
    files = files_of(package)
    people = "users.csv" if package == "oneroster11" else "students.csv"
    files[people] = files[people].replace(
        b"givenName" if package == "oneroster11" else b"First_name", b"Name", 1
    )
    run = import_zip(client, writer, roster_settings, roster_engine, zip_bytes(files))
    assert run["status"] == "rejected"
    assert run["report"]["errors"][0]["code"] == "MISSING_COLUMN"
    assert roster_state(roster_engine) == before


@pytest.mark.parametrize("package", PACKAGES)
def test_skip_on_a_first_import_creates_only_what_good_rows_give(
    package: str,
    policy_district: Callable[[str], dict[str, str]],
    client: TestClient,
    roster_settings: Settings,
    roster_engine: sa.Engine,
) -> None:
    """On PostgreSQL a first import streams while it reads; with rows skipped it is written the
    ordinary way, so nothing a skipped row names is half-written."""
    writer = policy_district("skip")
    body, bad_rows = PACKAGES[package]()
    run = import_zip(client, writer, roster_settings, roster_engine, body)
    assert run["status"] == "applied", run["report"].get("errors")
    assert run["report"]["skipped_row_count"] == len(bad_rows)
    after = roster_state(roster_engine)
    assert {"S2", "S3", "S7"}.isdisjoint(after["people"])  # named by skipped rows, not stored
    assert "C3" not in after["classes"]
    assert after["people"]["S6"] == ("student", "Sam", True)
    # S4 and S5 were only in C3, S3 is named by a skipped enrollment
    assert after["enrollments"] == {("C1", "S1"): True, ("C1", "S6"): True}
