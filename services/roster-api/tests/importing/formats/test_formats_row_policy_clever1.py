"""The `skip` row policy with Clever's SFTP files carrying 1.x headers (names with spaces, any case and
order, CR-only line ends, a BOM), over HTTP and the worker, on SQLite and PostgreSQL: the rows with
errors are left out and listed with file and line; the people and sections they name are neither
updated nor deactivated, and every other row applies. Under `reject` the same files change nothing."""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Callable

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
    drop: set[tuple[str, ...]] | None = None,
) -> bytes:
    """A 1.x file (CR-only line ends, maybe a BOM) with rows (by their `key` column) changed, rows
    whose cells include all of a `drop` tuple left out, and rows added at the end; the headers keep
    their spelling, the line ends and the BOM stay."""
    bom = data.startswith(codecs.BOM_UTF8)
    reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline=""))
    header = reader.fieldnames or []
    spelt = {"_".join(name.lower().split()): name for name in header}  # Student_id -> "STUDENT ID"
    out = io.StringIO()
    writer = csv.DictWriter(out, header, lineterminator="\r")
    writer.writeheader()
    for row in reader:
        if any(set(cells) <= set(row.values()) for cells in drop or set()):
            continue
        change = changes.get(row[spelt[key.lower()]], {})
        writer.writerow({**row, **{spelt[k.lower()]: v for k, v in change.items()}})
    for row in add or []:
        writer.writerow({spelt[k.lower()]: v for k, v in row.items()})
    assert "\n" not in out.getvalue()
    return (codecs.BOM_UTF8 if bom else b"") + out.getvalue().encode()


def _clever1_with_bad_rows() -> tuple[bytes, list[tuple[str, int]]]:
    """The fixture district (C1: T1; S1, S2. C2: T2, T3; S3, S4. C3: T3; S4, S5), S1 on two rows
    (one per contact). Good rows: S1 renamed (both rows), S4 no longer in C2, S6 new in C1, S8 new
    in C2, S3's row in C2 gone (their only class). Bad rows: S2 with an empty first name
    (students.csv line 4), C3 renamed with an unknown second teacher (sections.csv line 4), S3 and
    the new S7 enrolled in an unknown section (enrollments.csv lines 8 and 9; S7's student row itself
    is good)."""
    files = files_of("clever1")
    s6 = {"School_id": "sch-1", "Student_id": "S6", "First_name": "Sam", "Last_name": "Six", "Grade": "3"}
    s7 = {**s6, "Student_id": "S7", "First_name": "Sue", "Last_name": "Seven"}
    s8 = {**s6, "School_id": "sch-2", "Student_id": "S8", "First_name": "Eve", "Last_name": "Eight"}
    files["students.csv"] = _edit(
        files["students.csv"],
        "Student_id",
        {"S2": {"First_name": ""}, "S1": {"First_name": "Arnie"}},
        add=[s6, s7, s8],
    )
    files["sections.csv"] = _edit(
        files["sections.csv"], "Section_id", {"C3": {"Name": "Art II", "Teacher_2_id": "T9"}}
    )
    enroll = {"School_id": "sch-1", "Section_id": "C1"}
    files["enrollments.csv"] = _edit(
        files["enrollments.csv"],
        "Student_id",
        {},
        add=[
            {**enroll, "Student_id": "S6"},
            {"School_id": "sch-2", "Section_id": "C2", "Student_id": "S8"},
            {**enroll, "Student_id": "S3", "Section_id": "C9"},
            {**enroll, "Student_id": "S7", "Section_id": "C9"},
        ],
        drop={("S3", "C2"), ("S4", "C2")},
    )
    # students.csv: S1 on lines 2 and 3, S2 on line 4; enrollments.csv: S1, S2, S4 (C3), S5, S6, S8,
    # then S3 and S7 in C9 on lines 8 and 9
    return zip_bytes(files), [
        ("enrollments.csv", 8),
        ("enrollments.csv", 9),
        ("sections.csv", 4),
        ("students.csv", 4),
    ]


def test_skip_applies_1x_files_without_their_bad_rows_and_keeps_what_they_name(
    policy_district: Callable[[str], dict[str, str]],
    client: TestClient,
    roster_settings: Settings,
    roster_engine: sa.Engine,
) -> None:
    writer = policy_district("skip")
    first = import_zip(client, writer, roster_settings, roster_engine, zip_bytes(files_of("clever1")))
    assert first["status"] == "applied", first["report"].get("errors")
    assert first["report"]["version"] == "1.x"
    before = roster_state(roster_engine)
    body, bad_rows = _clever1_with_bad_rows()

    run = import_zip(client, writer, roster_settings, roster_engine, body)
    report = run["report"]
    assert run["status"] == "applied", (report.get("errors"), report.get("hold"))
    assert report["version"] == "1.x"
    assert report["error_count"] == 0
    assert sorted((p["file"], p["line"]) for p in report["skipped_rows"]) == bad_rows
    assert report["skipped_row_count"] == len(bad_rows)

    after = roster_state(roster_engine)
    # what the skipped rows name: as stored. S3's only good row is gone, so without the skipped row
    # that names them S3 and their place in C2 would be deactivated
    for sis in ("S2", "S3", "S5"):  # S5: C3 is their only section
        assert after["people"][sis] == before["people"][sis]
    assert after["people"]["S3"] == ("student", "Jane", True)
    assert after["classes"]["C3"] == before["classes"]["C3"] == ("Art", True)
    for link in (("C1", "S2"), ("C2", "S3"), ("C3", "S4"), ("C3", "S5")):
        assert after["enrollments"][link] is True
    assert after["class_teachers"][("C3", "T3")] is True
    assert "S7" not in after["people"]  # new, and named by a skipped row: not created
    # every other row applies
    assert after["people"]["S1"] == ("student", "Arnie", True)
    assert after["people"]["S6"] == ("student", "Sam", True)
    assert after["enrollments"][("C1", "S6")] is True
    assert after["enrollments"][("C2", "S8")] is True
    assert after["enrollments"][("C2", "S4")] is False
    assert after["people"]["S4"] == before["people"]["S4"]  # still in C3

    listed = client.get(f"/v1/imports/{run['id']}/changes", headers=writer, params={"limit": 500}).json()
    changed = {(i["entity"], i["kind"], i["id"]) for i in listed["items"] if i["entity"] != "account"}
    assert changed == {
        ("student", "updated", "sis:S1"),
        ("student", "created", "sis:S6"),
        ("student", "created", "sis:S8"),
        ("enrollment", "created", "C1 / sis:S6"),
        ("enrollment", "created", "C2 / sis:S8"),
        ("enrollment", "deactivated", "C2 / sis:S4"),
    }


def test_reject_rejects_the_same_1x_files(
    policy_district: Callable[[str], dict[str, str]],
    client: TestClient,
    roster_settings: Settings,
    roster_engine: sa.Engine,
) -> None:
    writer = policy_district("reject")
    first = import_zip(client, writer, roster_settings, roster_engine, zip_bytes(files_of("clever1")))
    assert first["status"] == "applied", first["report"].get("errors")
    before = roster_state(roster_engine)
    body, bad_rows = _clever1_with_bad_rows()
    run = import_zip(client, writer, roster_settings, roster_engine, body)
    assert run["status"] == "rejected"
    assert "skipped_rows" not in run["report"]
    assert sorted((p["file"], p["line"]) for p in run["report"]["errors"]) == bad_rows
    assert roster_state(roster_engine) == before
