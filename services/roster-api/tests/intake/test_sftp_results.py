"""The result file (and errors.csv) a district reads back from `results/`."""

from __future__ import annotations

import csv
import io
import os
import stat
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from roster_api.intake.results import csv_cell, remove_expired, write_result
from roster_api.models import ImportRun
from roster_api.settings import Settings

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
    assert "RocketLit: 2 students of 150 seats (not enforced)" in text
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
    assert '"\'=1+2"";=1+2"' in raw  # security.md C3's example, exactly
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
    assert "(nightly)" in nightly.read_text()


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
