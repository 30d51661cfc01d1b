"""The result file (and errors.csv) a district reads back from `results/`."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import stat
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from roster_api.db import session_scope
from roster_api.importing import changes
from roster_api.importing.diff import ChangeItem, Current, Policy, diff
from roster_api.importing.normalize import Roster
from roster_api.intake.results import csv_cell, remove_expired, write_result
from roster_api.models import District, ImportRun
from roster_api.settings import Settings

from ..importing.import_rows import csv_bytes, student
from .conftest import StartIntake

WHEN = datetime(2026, 11, 29, 7, 0, 5, tzinfo=UTC)


def _settings(tmp_path: Path) -> Settings:
    return Settings(database_url="sqlite://", data_dir=tmp_path / "data")


def _run(status: str, report: dict[str, Any], **fields: Any) -> ImportRun:
    values: dict[str, Any] = {
        "id": "imp_0123456789abcdef3f9a1c",
        "district_id": "d1",
        "status": status,
        "source": "sftp",
        "filename": "roster.csv",
        "sha256": "ab" * 32,
        "size_bytes": 1234,
        "report": report,
        "error_count": int(report.get("error_count", 0)),
        "warning_count": int(report.get("warning_count", 0)),
        "created_at": WHEN,
        "finished_at": WHEN,
    }
    values.update(fields)
    return ImportRun(**values)


APPLIED = {
    "encoding": "utf-8",
    "delimiter": "comma",
    "summary": {"rows": 3, "schools": 1, "teachers": 1, "classes": 1, "students": 2, "enrollments": 2},
    "changes": {
        "schools": {"created": 1, "updated": 0, "deactivated": 0, "reactivated": 0, "unchanged": 0},
        "students": {"created": 2, "updated": 0, "deactivated": 1, "reactivated": 0, "unchanged": 5},
    },
    "seats": {"rocketlit": {"licensed": 150, "used": 2, "enforced": False}},
    "error_count": 0,
    "warning_count": 0,
}


def test_applied_result_has_status_counts_changes_and_seats(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    path = write_result(settings=settings, run=_run("applied", APPLIED))
    assert path is not None
    assert path.parent == settings.data_dir / "sftp" / "d1" / "results"
    assert path.name == "roster.csv.20261129T070005Z-3f9a1c.txt"
    text = path.read_text()
    assert "Status:   APPLIED" in text
    assert "imp_0123456789abcdef3f9a1c" in text
    assert "Rows read: 3 (schools 1, teachers 1, classes 1, students 2, enrollments 2)" in text
    students = next(line for line in text.splitlines() if line.strip().startswith("students"))
    assert students.split()[1:] == ["2", "0", "1", "0", "5"]
    assert "RocketLit: 2 students of 150 seats (not a hard limit)" in text
    assert "Reference: imp_0123456789abcdef3f9a1c" in text
    assert "Received: 2026-11-29 07:00:05 UTC" in text  # no engine: no district time zone to use
    assert "What to do next:" in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # no errors.csv, and no temporary file left behind
    assert sorted(os.listdir(path.parent)) == [path.name]


def test_rejected_result_lists_first_errors_with_line_and_column_and_writes_errors_csv(
    tmp_path: Path,
) -> None:
    errors = [
        {"line": n, "column": "student_clever_id", "code": "INVALID_CLEVER_ID", "message": f"bad id {n}"}
        for n in range(2, 32)
    ]
    errors.insert(0, {"line": None, "column": None, "code": "SEATS_EXCEEDED", "message": "too many"})
    errors.append(
        {"line": 40, "column": "student_first_name", "code": "X", "message": '=1+2";=1+2', "hint": "@SUM(A1)"}
    )
    report = {
        "errors": errors,
        "error_count": 45,
        "warnings": [
            {"line": 7, "column": "student_grade_level", "code": "W", "message": "\t=cmd|' /C calc'!A0"}
        ],
        "warning_count": 1,
        "summary": {"rows": 31},
    }
    path = write_result(settings=_settings(tmp_path), run=_run("rejected", report))
    assert path is not None
    text = path.read_text()
    assert "REJECTED: nothing was changed. The file has 45 error(s)" in text
    assert "Errors: 45 (the first 20 below)" in text
    assert "  - whole file: too many" in text
    assert "  - line 2, column student_clever_id: bad id 2" in text
    assert "bad id 20" in text
    assert "bad id 21" not in text  # only the first 20
    assert "line 7, column student_grade_level:" in text
    assert "\t" not in text  # control characters from the file never reach the text file
    errors_csv = path.with_name("roster.csv.20261129T070005Z-3f9a1c.errors.csv")
    assert f"results/{errors_csv.name}" in text
    assert stat.S_IMODE(errors_csv.stat().st_mode) == 0o600
    raw = errors_csv.read_text()
    assert '"\'=1+2"";=1+2"' in raw  # docs/security.md C3's example, exactly
    rows = list(csv.reader(io.StringIO(raw)))
    assert rows[0] == ["severity", "line", "column", "code", "message", "hint"]
    assert len(rows) == 1 + len(errors) + 1
    injected = next(r for r in rows if r[1] == "40")
    assert injected[4] == "'=1+2\";=1+2"
    assert injected[5] == "'@SUM(A1)"
    assert rows[-1][0] == "warning"
    assert rows[-1][4].startswith("'\t=")


def test_held_result_says_why(tmp_path: Path) -> None:
    report = {
        **APPLIED,
        "hold": {"held": True, "approved": False, "reasons": [{"message": "30% of students deactivated"}]},
    }
    path = write_result(settings=_settings(tmp_path), run=_run("held", report))
    assert path is not None
    text = path.read_text()
    assert "HELD: nothing was changed yet" in text
    assert "  - 30% of students deactivated" in text


def test_skipped_and_failed(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    skipped = write_result(
        settings=settings,
        run=_run(
            "skipped", {"skipped_because": "Same bytes as import imp_x, already applied."}, id="imp_aaaaaa"
        ),
    )
    assert skipped is not None
    assert "SKIPPED" in skipped.read_text()
    assert "Same bytes as import imp_x" in skipped.read_text()
    failed = write_result(
        settings=settings, run=_run("failed", {}, id="imp_bbbbbb", failure="Internal error (OSError)")
    )
    assert failed is not None
    assert "FAILED: nothing was changed. Internal error (OSError)" in failed.read_text()


def test_only_sftp_and_nightly_imports_get_a_result_file(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert write_result(settings=settings, run=_run("applied", APPLIED, source="api")) is None
    nightly = write_result(settings=settings, run=_run("applied", APPLIED, source="nightly"))
    assert nightly is not None
    assert "the nightly sync" in nightly.read_text()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+2", "'=1+2"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("ok", "ok"),
    ],
)
def test_csv_cells_are_formula_safe(value: str, expected: str) -> None:
    assert csv_cell(value) == expected


def test_old_uploads_and_results_are_removed_after_retention(tmp_path: Path) -> None:
    settings = _settings(tmp_path).model_copy(update={"upload_retention_days": 30})
    folder = settings.data_dir / "sftp" / "d1"
    (folder / "results").mkdir(parents=True)
    old, new = folder / "old.csv", folder / "roster.csv"
    old_result = folder / "results" / "old.txt"
    for path in (old, new, old_result):
        path.write_text("x")
    month_ago = time.time() - 31 * 86_400
    os.utime(old, (month_ago, month_ago))
    os.utime(old_result, (month_ago, month_ago))
    assert remove_expired(settings=settings, district_id="d1") == 2
    assert not old.exists()
    assert not old_result.exists()
    assert new.exists()


# --- plain words, the district's time, the changes file, the rows of errors --------------------------


def test_the_text_speaks_plainly_with_thousands_separators(tmp_path: Path) -> None:
    report = {
        **APPLIED,
        "summary": {"rows": 1_234_567, "schools": 28, "teachers": 1_008, "students": 170_000},
        "changes": {"enrollments": {"created": 1_020_000, "updated": 0, "unchanged": 0}},
    }
    path = write_result(settings=_settings(tmp_path), run=_run("applied", report, size_bytes=123_456_789))
    assert path is not None
    text = path.read_text()
    assert "Rows read: 1,234,567 (schools 28, teachers 1,008, students 170,000)" in text
    assert "123,456,789 bytes, uploaded by SFTP" in text
    assert "1,020,000" in text
    for jargon in ("sha", "SHA", "dry run", "sftp)", "validated", "imp_0123456789abcdef3f9a1c (sftp"):
        assert jargon not in text, jargon


@pytest.mark.parametrize(
    ("status", "next_step"),
    [
        ("held", "approve this import in the district console (Imports)"),
        ("validated", "upload the same file under its usual name (without .preview)"),
        ("rejected", "Correct the errors below"),
        ("skipped", "already up to date"),
        ("expired", "upload it again"),
    ],
)
def test_each_outcome_says_what_to_do_next(tmp_path: Path, status: str, next_step: str) -> None:
    path = write_result(settings=_settings(tmp_path), run=_run(status, {"error_count": 1}))
    assert path is not None
    text = path.read_text()
    assert next_step in text.split("What to do next:")[1]


def test_readiness_warnings_and_a_not_utf8_warning_point_to_what_sftp_users_have(tmp_path: Path) -> None:
    report = {
        **APPLIED,
        "readiness": [
            {
                "code": "NO_CLEVER_LINK",
                "message": "This district is not linked to a Clever district, so nobody can log in with "
                "Clever yet.",
                "hint": "Ask RocketLit support to link your Clever district.",
                "count": 3,
                "rows": [],
            },
            {
                "code": "NOT_UTF8",
                "message": "The file is not UTF-8 (it was read as windows-1252), and it changes 1 first or "
                "last names: letters with accents may have been read wrong.",
                "hint": "Save the file as CSV UTF-8.",
                "count": 1,
                "rows": [{"line": 2, "field": "first_name", "old": "Nguyễn", "new": "Nguy?n"}],
            },
        ],
        "warnings": [
            {
                "line": 2,
                "column": None,
                "code": "NOT_UTF8",
                "message": "The file is not UTF-8 (first on line 2); it was read as Windows-1252.",
                "hint": "Check accented names in the preview.",
            }
        ],
        "warning_count": 1,
    }
    path = write_result(settings=_settings(tmp_path), run=_run("held", report))
    assert path is not None
    text = path.read_text()
    attention = text.split("Needs your attention:")[1]
    assert "nobody can log in with Clever yet" in attention
    assert "line 2, first name: Nguyễn -> Nguy?n" in attention
    assert "preview" not in text
    assert "Check the names under 'Needs your attention'" in text


def _district(engine: sa.Engine, zone: str) -> None:
    with session_scope(engine) as session:
        session.add(District(id="d1", name="D1", timezone=zone))


def test_with_the_database_times_are_local_and_a_hold_gets_its_changes_csv(
    tmp_path: Path, roster_engine: sa.Engine
) -> None:
    _district(roster_engine, "America/New_York")
    run = _run("held", {**APPLIED, "changes": {"students": {"created": 0, "deactivated": 1}}})
    item = ChangeItem("student", "updated", "c1", "=Zoë Doe", 2, (("first_name", "Zoe", "=Zoë"),))
    result = diff(Roster(), Current(), Policy(licenses={}))
    result.changes["students"].items.append(item)
    with roster_engine.begin() as conn:
        changes.store(conn, import_id=run.id, district_id="d1", diff=result)
    path = write_result(settings=_settings(tmp_path), run=run, engine=roster_engine)
    assert path is not None
    text = path.read_text()
    assert "Received: 2026-11-29 02:00:05 EST (2026-11-29 07:00:05 UTC)" in text
    changes_csv = path.with_name("roster.csv.20261129T070005Z-3f9a1c.changes.csv")
    assert f"results/{changes_csv.name}" in text
    assert stat.S_IMODE(changes_csv.stat().st_mode) == 0o600
    rows = list(csv.reader(io.StringIO(changes_csv.read_text(encoding="utf-8"))))
    assert rows == [
        ["entity", "change", "id", "name", "line", "changes"],
        ["student", "updated", "c1", "'=Zoë Doe", "2", "first_name: Zoe -> =Zoë"],
    ]
    # an applied import gets no changes file; a time zone the system does not know falls back to UTC
    with session_scope(roster_engine) as session:
        district = session.get(District, "d1")
        assert district is not None
        district.timezone = "Mars/Olympus"
    applied = write_result(
        settings=_settings(tmp_path), run=_run("applied", APPLIED, id="imp_cccccc"), engine=roster_engine
    )
    assert applied is not None
    assert "Received: 2026-11-29 07:00:05 UTC" in applied.read_text()
    assert not list(applied.parent.glob("*cccccc.changes.csv"))


def test_each_listed_error_shows_the_key_values_of_its_row(tmp_path: Path) -> None:
    upload = tmp_path / "upload.csv"
    upload.write_text(
        "school_id,school_name,class_id,class_name,student_clever_id,student_email,student_first_name\n"
        "sch-1,Lincoln,cls-1,Math,aaaaaaaaaaaaaaaaaaaaaaaa,a@example.org,Ann\n"
        'sch-2,"Adams,\nEast",cls-2,Art,,b@example.org,\n'
        "sch-3,Kent,cls-3,Art,cccccccccccccccccccccccc,c@example.org,Cy\n",
        encoding="utf-8",
    )
    report = {
        "format": "v1",
        "delimiter": "comma",
        "encoding": "utf-8",
        "errors": [
            {"line": 3, "column": "student_first_name", "code": "MISSING_VALUE", "message": "empty"},
            {"line": 5, "column": "student_clever_id", "code": "X", "message": "bad"},
            {"line": None, "column": None, "code": "SEATS_EXCEEDED", "message": "too many"},
        ],
        "error_count": 3,
    }
    run = _run("rejected", report, upload_path=str(upload))
    path = write_result(settings=_settings(tmp_path), run=run)
    assert path is not None
    text = path.read_text()
    # line 3 is a record over two lines; the next record starts on line 5
    assert (
        "line 3, column student_first_name (school_id sch-2, class_id cls-2, student_email b@example.org)"
        in text
    )
    assert "line 5, column student_clever_id (school_id sch-3, class_id cls-3, student_clever_id cccc" in text
    assert "  - whole file: too many" in text


# --- over real SFTP, with the worker ------------------------------------------------------------


def _roster(students: range) -> bytes:
    return csv_bytes([student(n) for n in students])


async def test_a_held_sftp_upload_gets_its_changes_file_in_results(
    start_intake: StartIntake, tmp_path: Path
) -> None:
    from roster_api.jobs.worker import ImportWorker

    env = await start_intake(enqueue=None)  # the real import queue
    worker = ImportWorker(engine=env.engine, settings=env.settings)
    first, held = tmp_path / "first.csv", tmp_path / "held.csv"
    first.write_bytes(_roster(range(1, 11)))
    held.write_bytes(_roster(range(1, 6)))  # half the students gone: held
    async with await env.connect() as conn, conn.start_sftp_client() as sftp:
        await sftp.put(str(first), "roster.csv")
        [applied] = await asyncio.to_thread(worker.run_until_idle)
        assert applied.status == "applied"
        await sftp.put(str(held), "roster.csv")
        [hold] = await asyncio.to_thread(worker.run_until_idle)
        assert hold.status == "held"
        names = await sftp.listdir("results")
        assert not [n for n in names if applied.id[-6:] in n and n.endswith(".changes.csv")]
        [changes_csv] = [n for n in names if hold.id[-6:] in n and n.endswith(".changes.csv")]
        [text_name] = [n for n in names if hold.id[-6:] in n and n.endswith(".txt")]
        async with sftp.open(f"results/{changes_csv}", encoding="utf-8") as fh:
            rows = list(csv.DictReader(io.StringIO(await fh.read())))
        async with sftp.open(f"results/{text_name}", encoding="utf-8") as fh:
            text = await fh.read()
    gone = sorted(r["id"] for r in rows if r["entity"] == "student" and r["change"] == "deactivated")
    assert gone == [f"{n:024x}" for n in range(6, 11)]
    assert f"results/{changes_csv}" in text
    assert "HELD" in text
