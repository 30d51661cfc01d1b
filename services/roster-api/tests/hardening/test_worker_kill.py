"""`kill -9` of the import worker (`roster-api worker`, a real process) while it runs an import on
PostgreSQL: the roster is untouched (the apply is one transaction); a restarted worker runs the import
again once the lease has expired, and the roster then equals the file, with no duplicates."""

from __future__ import annotations

import csv
import io
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from roster_api.importing.csv_format import COLUMNS

from . import live

STUDENTS = 6000
KILL_AFTER_RUNNING_SECONDS = 0.5


def roster_csv(count: int) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(COLUMNS), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for n in range(1, count + 1):
        writer.writerow(
            {
                "school_id": f"sch-{n % 5}",
                "school_name": f"School {n % 5}",
                "teacher_email": f"teacher{n % 40}@kill.example.org",
                "teacher_first_name": "Pat",
                "teacher_last_name": f"Teacher{n % 40}",
                "teacher_clever_id": f"{10**6 + n % 40:024x}",
                "class_id": f"cls-{n % 40}",
                "class_name": f"Class {n % 40}",
                "student_first_name": f"Kid{n}",
                "student_last_name": "Doe",
                "student_clever_id": f"{n:024x}",
                "student_email": f"kid{n}@kill.example.org",
                "student_grade_level": "5",
            }
        )
    return out.getvalue().encode()


def _status(engine: sa.Engine, import_id: str) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(sa.text("select status from import_run where id = :id"), {"id": import_id}).scalar()
        )


def _wait_status(engine: sa.Engine, import_id: str, wanted: set[str], seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = _status(engine, import_id)
        if status in wanted:
            return status
        time.sleep(0.05)
    raise AssertionError(f"import {import_id} still {_status(engine, import_id)!r} after {seconds} s")


def _students(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        query = "select email from person where district_id = 'd1' and role = 'student' and active"
        return [str(row[0]) for row in conn.execute(sa.text(query))]


@pytest.mark.slow
def test_kill_9_of_the_worker_mid_import_then_restart_gives_the_file(
    database_url: str, roster_engine: sa.Engine, make_key: Callable[..., str], tmp_path: Path
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip(
            "the worker-kill run is on PostgreSQL (SQLite has one writer; covered by the import tests)"
        )
    admin = make_key("admin", name="kill-admin")
    headers = {"Authorization": f"Bearer {admin}"}
    env = live.env_for(
        database_url, tmp_path / "data", ROSTER_RUN_WORKER="false", ROSTER_IMPORT_LEASE_SECONDS="10"
    )
    body = roster_csv(STUDENTS)
    with live.serving(env, [tmp_path / "serve.log"]) as (server,):
        district = {"id": "d1", "name": "D1", "licenses": {"rocketlit": {"seats": 100_000}}}
        assert httpx.post(server.url + "/v1/districts", json=district, headers=headers).status_code == 201
        uploaded = httpx.post(
            server.url + "/v1/districts/d1/imports",
            content=body,
            headers={**headers, "Content-Type": "text/csv"},
            timeout=60,
        )
        assert uploaded.status_code == 202, uploaded.text
        import_id = uploaded.json()["id"]

    worker = live.worker(env, tmp_path / "worker-1.log")
    try:
        _wait_status(roster_engine, import_id, {"running"}, 60)
        time.sleep(KILL_AFTER_RUNNING_SECONDS)
        worker.proc.send_signal(signal.SIGKILL)
        worker.proc.wait(10)
    finally:
        live.stop(worker)
    status = _status(roster_engine, import_id)
    students = _students(roster_engine)
    assert (status, len(students)) in {("running", 0), ("applied", STUDENTS)}, (status, len(students))

    restarted = live.worker(env, tmp_path / "worker-2.log")
    try:
        assert (
            _wait_status(roster_engine, import_id, {"applied", "failed", "rejected", "held"}, 90) == "applied"
        )
    finally:
        live.stop(restarted)
    students = _students(roster_engine)
    assert len(students) == STUDENTS
    assert set(students) == {f"kid{n}@kill.example.org" for n in range(1, STUDENTS + 1)}
