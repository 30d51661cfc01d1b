"""Nightly re-sync with the real import engine: skipped when unchanged, applied when changed, once per
district per local night even when schedulers race (two engines, i.e. two processes)."""

from __future__ import annotations

import io
import threading
import time as clock
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session, col, select

from roster_api.db import make_engine, session_scope
from roster_api.importing.run import run_import
from roster_api.jobs.nightly import NightlyScheduler, due_date, run_nightly
from roster_api.models import District, ImportRun, NightlyRun, Person
from roster_api.settings import Settings

from ..importing.formats.helpers import DATA

HEADER = (
    "school_id,school_name,teacher_email,teacher_first_name,teacher_last_name,teacher_clever_id,"
    "class_id,class_name,student_first_name,student_last_name,student_clever_id,student_email,"
    "student_grade_level\n"
)
ROW = (
    "s1,North,t@x.org,Tina,Teach,5787451bd72145af07002281,c1,Math,{first},Stu,5787451bd72145af0700228{n},,3\n"
)
# 07:00 UTC is 02:00 in New York (the default district time zone and nightly time) in winter.
NIGHT = datetime(2026, 11, 29, 7, 0, 30, tzinfo=UTC)


def _roster(*names: str) -> str:
    return HEADER + "".join(ROW.format(first=name, n=i + 2) for i, name in enumerate(names))


@pytest.fixture
def district(roster_engine: sa.Engine, roster_settings: Settings) -> Path:
    with session_scope(roster_engine) as session:
        session.add(District(id="d1", name="District One"))
    folder = roster_settings.data_dir / "sftp" / "d1"
    folder.mkdir(parents=True)
    return folder


def _nightly(engine: sa.Engine, settings: Settings, now: datetime) -> list[str]:
    outcomes = run_nightly(engine=engine, settings=settings, now=now)
    for outcome in outcomes:
        if outcome.outcome == "queued":
            assert outcome.import_id is not None
            run_import(engine=engine, settings=settings, import_id=outcome.import_id)
    return [o.outcome for o in outcomes]


def _students(engine: sa.Engine) -> list[str]:
    with Session(engine) as session:
        people = session.exec(select(Person).where(Person.role == "student", Person.active)).all()
    return sorted(p.first_name for p in people)


def test_applied_when_changed_skipped_when_unchanged(
    roster_engine: sa.Engine, roster_settings: Settings, district: Path
) -> None:
    (district / "roster.csv").write_text(_roster("Ann", "Bob"))
    assert _nightly(roster_engine, roster_settings, NIGHT) == ["queued"]
    assert _students(roster_engine) == ["Ann", "Bob"]
    # the same night again: nothing (already done)
    assert _nightly(roster_engine, roster_settings, NIGHT + timedelta(minutes=5)) == ["already_done"]
    # next night, same bytes: skipped, no import created
    assert _nightly(roster_engine, roster_settings, NIGHT + timedelta(days=1)) == ["skipped"]
    # next night, the district re-uploaded with a change: applied
    (district / "roster.csv").write_text(_roster("Ann", "Cat"))
    assert _nightly(roster_engine, roster_settings, NIGHT + timedelta(days=2)) == ["queued"]
    assert _students(roster_engine) == ["Ann", "Cat"]
    with Session(roster_engine) as session:
        runs = session.exec(select(ImportRun).order_by(col(ImportRun.created_at))).all()
        nights = session.exec(select(NightlyRun).order_by(NightlyRun.run_date)).all()
    assert [(r.source, r.status, r.created_by) for r in runs] == [("nightly", "applied", "nightly")] * 2
    assert [(n.run_date, n.outcome) for n in nights] == [
        ("2026-11-29", "queued"),
        ("2026-11-30", "skipped"),
        ("2026-12-01", "queued"),
    ]
    assert nights[0].import_id == runs[0].id
    assert nights[1].import_id == runs[0].id  # skipped because of this applied import


def test_configured_file_name_and_missing_file(
    roster_engine: sa.Engine, roster_settings: Settings, district: Path
) -> None:
    assert _nightly(roster_engine, roster_settings, NIGHT) == ["no_file"]
    with session_scope(roster_engine) as session:
        d = session.get(District, "d1")
        assert d is not None
        d.nightly_file_name = "students.csv"
        session.add(d)
    (district / "roster.csv").write_text(_roster("Ann"))
    (district / "students.csv").write_text(_roster("Zed"))
    assert _nightly(roster_engine, roster_settings, NIGHT + timedelta(days=1)) == ["queued"]
    assert _students(roster_engine) == ["Zed"]


def test_a_package_named_as_the_nightly_file_is_synced(
    roster_engine: sa.Engine, roster_settings: Settings, district: Path
) -> None:
    """A district whose Clever files arrive one by one (packed into clever.zip) re-syncs from that zip."""
    package = DATA / "clever2"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for member in sorted(package.iterdir()):
            archive.writestr(member.name, member.read_bytes())
    with session_scope(roster_engine) as session:
        d = session.get(District, "d1")
        assert d is not None
        d.nightly_file_name = "clever.zip"
        session.add(d)
    (district / "clever.zip").write_bytes(out.getvalue())
    assert _nightly(roster_engine, roster_settings, NIGHT) == ["queued"]
    with Session(roster_engine) as session:
        run = session.exec(select(ImportRun)).one()
    assert (run.source, run.status, run.report["format"]) == ("nightly", "applied", "clever")
    assert _students(roster_engine)
    # the same zip the next night: unchanged, skipped
    assert _nightly(roster_engine, roster_settings, NIGHT + timedelta(days=1)) == ["skipped"]


def test_a_file_still_waiting_is_not_queued_twice(
    roster_engine: sa.Engine, roster_settings: Settings, district: Path
) -> None:
    (district / "roster.csv").write_text(_roster("Ann"))
    first = run_nightly(engine=roster_engine, settings=roster_settings, now=NIGHT)
    assert [o.outcome for o in first] == ["queued"]
    # not run yet (the worker is busy): the next night does not queue the same bytes again
    second = run_nightly(engine=roster_engine, settings=roster_settings, now=NIGHT + timedelta(days=1))
    assert [(o.outcome, o.import_id) for o in second] == [("pending", first[0].import_id)]


def test_symlinked_nightly_file_is_not_followed(
    roster_engine: sa.Engine, roster_settings: Settings, district: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.csv"
    outside.write_text(_roster("Eve"))
    (district / "roster.csv").symlink_to(outside)
    assert _nightly(roster_engine, roster_settings, NIGHT) == ["no_file"]


def test_two_schedulers_racing_run_it_once(
    database_url: str, roster_engine: sa.Engine, roster_settings: Settings, district: Path
) -> None:
    (district / "roster.csv").write_text(_roster("Ann", "Bob"))
    engines = [make_engine(database_url) for _ in range(4)]
    barrier = threading.Barrier(len(engines))
    results: list[list[str]] = []
    lock = threading.Lock()

    def scheduler(engine: sa.Engine) -> None:
        barrier.wait()
        outcomes = run_nightly(engine=engine, settings=roster_settings, now=NIGHT, due_only=True)
        with lock:
            results.append([o.outcome for o in outcomes])

    threads = [threading.Thread(target=scheduler, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for engine in engines:
        engine.dispose()
    flat = sorted(o for r in results for o in r)
    assert flat.count("queued") == 1
    assert set(flat) <= {"queued", "already_done"}
    with Session(roster_engine) as session:
        assert len(session.exec(select(ImportRun)).all()) == 1
        assert len(session.exec(select(NightlyRun)).all()) == 1


@pytest.mark.parametrize(
    ("now", "timezone", "at", "expected"),
    [
        (datetime(2026, 11, 29, 7, 0, tzinfo=UTC), "America/New_York", "02:00", "2026-11-29"),
        (datetime(2026, 11, 29, 6, 59, tzinfo=UTC), "America/New_York", "02:00", None),
        (datetime(2026, 11, 29, 12, 59, tzinfo=UTC), "America/New_York", "02:00", "2026-11-29"),  # catch-up
        (datetime(2026, 11, 29, 13, 0, tzinfo=UTC), "America/New_York", "02:00", None),  # window over
        (datetime(2026, 7, 1, 6, 0, tzinfo=UTC), "America/New_York", "02:00", "2026-07-01"),  # summer time
        (datetime(2026, 11, 30, 1, 0, tzinfo=UTC), "Europe/Paris", "23:30", "2026-11-29"),  # past midnight
        (datetime(2026, 3, 8, 7, 30, tzinfo=UTC), "America/New_York", "02:30", "2026-03-08"),  # DST gap
        (datetime(2026, 11, 29, 2, 0, tzinfo=UTC), "Not/AZone", "02:00", "2026-11-29"),  # falls back to UTC
    ],
)
def test_due_date(now: datetime, timezone: str, at: str, expected: str | None) -> None:
    window = timedelta(hours=6)
    assert due_date(timezone=timezone, nightly_time=at, now=now, window=window) == expected


def test_due_only_skips_districts_whose_time_has_not_come(
    roster_engine: sa.Engine, roster_settings: Settings, district: Path
) -> None:
    (district / "roster.csv").write_text(_roster("Ann"))
    afternoon = datetime(2026, 11, 29, 20, 0, tzinfo=UTC)
    assert run_nightly(engine=roster_engine, settings=roster_settings, now=afternoon, due_only=True) == []
    with Session(roster_engine) as session:
        assert session.exec(select(NightlyRun)).all() == []


def test_in_process_scheduler_runs_at_the_local_nightly_time(
    roster_engine: sa.Engine, roster_settings: Settings, district: Path
) -> None:
    (district / "roster.csv").write_text(_roster("Ann"))
    now = [datetime(2026, 11, 29, 6, 59, tzinfo=UTC)]
    settings = roster_settings.model_copy(update={"nightly_poll_seconds": 0.05})
    scheduler = NightlyScheduler(engine=roster_engine, settings=settings, clock=lambda: now[0])
    scheduler.start()
    try:
        deadline = clock.monotonic() + 5
        while scheduler.ticks < 3 and clock.monotonic() < deadline:
            clock.sleep(0.02)
        with Session(roster_engine) as session:
            assert session.exec(select(ImportRun)).all() == []  # 01:59 local: not yet
        now[0] = datetime(2026, 11, 29, 7, 1, tzinfo=UTC)
        ticks = scheduler.ticks
        while scheduler.ticks < ticks + 3 and clock.monotonic() < deadline:
            clock.sleep(0.02)
    finally:
        scheduler.stop()
    with Session(roster_engine) as session:
        runs = session.exec(select(ImportRun)).all()
    assert [(r.source, r.status) for r in runs] == [("nightly", "queued")]


def test_nightly_runs_are_listed_per_district(
    client: Any,
    admin_headers: dict[str, str],
    make_key: Any,
    roster_engine: sa.Engine,
    roster_settings: Settings,
    district: Path,
) -> None:
    (district / "roster.csv").write_text(_roster("Ann"))
    _nightly(roster_engine, roster_settings, NIGHT)
    _nightly(roster_engine, roster_settings, NIGHT + timedelta(days=1))
    response = client.get("/v1/districts/d1/nightly-runs", headers=admin_headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == 2
    assert [(i["run_date"], i["outcome"]) for i in body["items"]] == [
        ("2026-11-30", "skipped"),
        ("2026-11-29", "queued"),
    ]
    assert body["items"][0]["import_id"] == body["items"][1]["import_id"]
    reader = {"Authorization": f"Bearer {make_key('roster:read', district='d1')}"}
    assert client.get("/v1/districts/d1/nightly-runs?limit=1", headers=reader).json()["total"] == 2
    assert client.get("/v1/districts/nope/nightly-runs", headers=admin_headers).status_code == 404


def test_nightly_ignores_preview_files(
    roster_engine: sa.Engine, roster_settings: Settings, district: Path
) -> None:
    """A `*.preview.csv` only ever checks: the nightly sync never applies one, even when it is the
    configured file, and a preview next to the configured file changes nothing."""
    (district / "roster.preview.csv").write_text(_roster("Ann", "Bob"))
    assert _nightly(roster_engine, roster_settings, NIGHT) == ["no_file"]
    with session_scope(roster_engine) as session:
        record = session.get(District, "d1")
        assert record is not None
        record.nightly_file_name = "roster.preview.csv"
        session.add(record)
    assert _nightly(roster_engine, roster_settings, NIGHT + timedelta(days=1)) == ["no_file"]
    with Session(roster_engine) as session:
        assert session.exec(select(ImportRun)).all() == []
        row = session.get(NightlyRun, ("d1", "2026-11-30"))
        assert row is not None
        assert row.outcome == "no_file"
