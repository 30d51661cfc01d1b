"""Sync semantics against a real database (SQLite and PostgreSQL): create, update, deactivate,
reactivate, hold -> approve / discard, skip on identical bytes, all-or-nothing apply, one import per
district at a time, recovery of an interrupted import, upload retention."""

from __future__ import annotations

import gc
import itertools
import sqlite3
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlmodel import Session, col, select

from roster_api.db import session_scope
from roster_api.importing import apply as apply_mod
from roster_api.importing import links as links_mod
from roster_api.importing import normalize as normalize_mod
from roster_api.importing import service, uploads
from roster_api.importing.diff import Plan
from roster_api.importing.run import run_import
from roster_api.jobs.worker import ImportWorker
from roster_api.models import Account, District, ImportRun, License, Person, School, Section, utcnow
from roster_api.settings import Settings

from .import_rows import S1, csv_bytes, csv_text, row, student

SNAPSHOT_SQL = {
    "school": "select school_id, name, active from school order by 1",
    "section": "select class_id, school_id, name, active from section order by 1",
    "person": "select id, role, clever_id, clever_id_source, email, first_name, last_name, grade, active "
    "from person order by 1",
    "section_teacher": "select class_id, person_id, active from section_teacher order by 1, 2",
    "enrollment": "select class_id, person_id, active from enrollment order by 1, 2",
    "account": "select person_id, product, account_id, active from account order by 1, 2",
}


@pytest.fixture
def env(roster_engine: sa.Engine, roster_settings: Settings, tmp_path: Path) -> Env:
    with session_scope(roster_engine) as session:
        session.add(District(id="d1", name="D1"))
        session.flush()
        session.add(License(district_id="d1", product="rocketlit", seats=1000))
        session.add(License(district_id="d1", product="innerorbit", seats=1000))
    return Env(roster_engine, roster_settings, tmp_path)


class Env:
    def __init__(self, engine: sa.Engine, settings: Settings, tmp: Path) -> None:
        self.engine, self.settings, self.tmp = engine, settings, tmp
        self.worker = ImportWorker(engine=engine, settings=settings)
        self.n = 0

    def enqueue(self, data: bytes, **kw: Any) -> ImportRun:
        self.n += 1
        path = self.tmp / f"upload{self.n}.csv"
        path.write_bytes(data)
        return uploads.enqueue_file(
            engine=self.engine,
            settings=self.settings,
            district_id="d1",
            source=kw.pop("source", "api"),
            src_path=path,
            filename="roster.csv",
            created_by="test",
            **kw,
        )

    def sync(self, data: bytes, **kw: Any) -> ImportRun:
        run = self.enqueue(data, **kw)
        self.worker.run_until_idle()
        return self.get(run.id)

    def get(self, import_id: str) -> ImportRun:
        with Session(self.engine) as session:
            run = session.get(ImportRun, import_id)
            assert run is not None
            return run

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        with self.engine.connect() as conn:
            return {
                name: [tuple(r) for r in conn.execute(sa.text(sql))] for name, sql in SNAPSHOT_SQL.items()
            }

    def people(self) -> dict[str, tuple[Any, ...]]:
        """email -> (id, active, first, last, grade)"""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text("select email, id, active, first_name, last_name, grade from person"))
            return {r[0]: (r[1], bool(r[2]), r[3], r[4], r[5]) for r in rows}

    def accounts(self, person_id: str) -> dict[str, tuple[str, bool]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.text("select product, account_id, active from account where person_id = :p"),
                {"p": person_id},
            )
            return {r[0]: (r[1], bool(r[2])) for r in rows}


CLASS = [student(n) for n in range(1, 21)]


def test_create_update_deactivate_reactivate(env: Env) -> None:
    first = env.sync(csv_bytes(CLASS))
    assert first.status == "applied", first.failure
    people = env.people()
    kid1_id = people["kid1@springfield.example.org"][0]
    assert kid1_id.startswith("p_")
    accounts = env.accounts(kid1_id)
    assert set(accounts) == {"rocketlit", "innerorbit"}
    assert all(a.startswith("acct_") and active for a, active in accounts.values())

    # update: a grade changes; 1 of 20 students leaves (5 %, under the hold threshold)
    changed = [student(1, student_grade_level="4"), *CLASS[1:19]]
    second = env.sync(csv_bytes(changed))
    assert second.status == "applied", second.report
    assert second.report["changes"]["students"]["updated"] == 1
    assert second.report["changes"]["students"]["deactivated"] == 1
    people = env.people()
    assert people["kid1@springfield.example.org"][4] == "4"
    gone_id, gone_active = people["kid20@springfield.example.org"][:2]
    assert gone_active is False
    assert all(not active for _, active in env.accounts(gone_id).values())
    with env.engine.connect() as conn:
        enrolled = conn.execute(
            sa.text("select active from enrollment where person_id = :p"), {"p": gone_id}
        ).scalar()
    assert not enrolled

    # the student comes back: same person, same accounts, reactivated
    before = env.accounts(gone_id)
    third = env.sync(csv_bytes([student(1, student_grade_level="4"), *CLASS[1:]]))
    assert third.status == "applied"
    assert third.report["changes"]["students"]["reactivated"] == 1
    assert env.people()["kid20@springfield.example.org"][:2] == (gone_id, True)
    assert env.accounts(gone_id) == {p: (a, True) for p, (a, _) in before.items()}


def test_ids_and_names_with_csv_metacharacters_are_stored_exactly(env: Env) -> None:
    """The writes go through COPY in CSV format on PostgreSQL: commas, quotes, newlines and spaces in
    the district's own ids and names must come back byte for byte, and never read as NULL."""
    odd_class = 'Math, "Honors"\n2nd  '
    odd_school = ' S,1 "north" '  # trimmed by the importer, like every value
    rows = [
        student(1, class_id=odd_class, class_name='Algebra, "A"', school_id=odd_school),
        student(2, class_id=odd_class, class_name='Algebra, "A"', school_id=odd_school),
        student(3, class_id="\\.", student_last_name='O"Brien, Jr.'),
    ]
    assert env.sync(csv_bytes(rows)).status == "applied"
    snap = env.snapshot()
    assert sorted(r[0] for r in snap["school"]) == ['S,1 "north"', "sch-1"]
    classes = {r[0]: r for r in snap["section"]}
    assert classes['Math, "Honors"\n2nd'][1:] == ('S,1 "north"', 'Algebra, "A"', True)
    assert "\\." in classes
    enrolled = {r[0] for r in snap["enrollment"]}
    assert enrolled == {'Math, "Honors"\n2nd', "\\."}
    assert sum(1 for r in snap["enrollment"] if r[0] == 'Math, "Honors"\n2nd') == 2
    assert any(r[6] == 'O"Brien, Jr.' for r in snap["person"])
    # and the next import of the same roster sees every row as unchanged
    again = env.sync(csv_bytes([*rows, student(4, class_id="\\.")]))
    assert again.status == "applied"
    changes = again.report["changes"]
    assert changes["enrollments"]["created"] == 1
    assert changes["classes"]["created"] == 0
    assert changes["classes"]["updated"] == 0


def test_identical_bytes_are_skipped_and_identical_roster_changes_nothing(env: Env) -> None:
    data = csv_bytes(CLASS)
    assert env.sync(data).status == "applied"
    before = env.snapshot()
    skipped = env.sync(data)
    assert skipped.status == "skipped"
    assert "already applied" in skipped.report["skipped_because"]
    # same roster, different bytes (CRLF): applied with no change at all
    again = env.sync(data.replace(b"\n", b"\r\n"))
    assert again.status == "applied"
    assert all(c["created"] + c["updated"] + c["deactivated"] == 0 for c in again.report["changes"].values())
    assert env.snapshot() == before


def test_dry_run_changes_nothing(env: Env) -> None:
    env.sync(csv_bytes(CLASS))
    before = env.snapshot()
    run = env.sync(csv_bytes(CLASS[:19]), dry_run=True)
    assert run.status == "validated"
    assert run.report["changes"]["students"]["deactivated"] == 1
    assert env.snapshot() == before


def test_rejected_import_changes_nothing(env: Env) -> None:
    env.sync(csv_bytes(CLASS))
    before = env.snapshot()
    run = env.sync(csv_bytes([*CLASS[:5], student(99, student_clever_id="12345")]))
    assert run.status == "rejected"
    assert run.error_count == 1
    assert env.snapshot() == before


def test_hold_then_approve(env: Env) -> None:
    env.sync(csv_bytes(CLASS))
    before = env.snapshot()
    held = env.sync(csv_bytes(CLASS[:10]))
    assert held.status == "held"
    reasons = {(r["entity"], r["change"]): r["count"] for r in held.report["hold"]["reasons"]}
    assert reasons == {("students", "deactivated"): 10, ("enrollments", "deactivated"): 10}
    assert env.snapshot() == before
    with session_scope(env.engine) as session:
        run = session.get(ImportRun, held.id)
        assert run is not None
        service.approve(session=session, run=run, actor="support")
    env.worker.run_until_idle()
    approved = env.get(held.id)
    assert approved.status == "applied"
    assert approved.decided_by == "support"
    assert sum(1 for _, active, *_ in env.people().values() if active) == 11  # 10 students + teacher


def test_hold_then_discard(env: Env) -> None:
    env.sync(csv_bytes(CLASS))
    before = env.snapshot()
    held = env.sync(csv_bytes(CLASS[:10]))
    assert held.status == "held"
    with session_scope(env.engine) as session:
        run = session.get(ImportRun, held.id)
        assert run is not None
        service.discard(session=session, run=run, actor="support")
    env.worker.run_until_idle()
    assert env.get(held.id).status == "discarded"
    assert env.snapshot() == before


def test_failure_halfway_through_apply_leaves_the_roster_unchanged(env: Env) -> None:
    env.sync(csv_bytes(CLASS))
    before = env.snapshot()
    run = env.enqueue(csv_bytes([student(1, student_last_name="Changed"), *CLASS[1:19], student(30)]))
    steps: list[str] = []

    def boom(step: str) -> None:
        steps.append(step)
        if step == "people":
            raise RuntimeError("injected failure")

    done = run_import(engine=env.engine, settings=env.settings, import_id=run.id, step=boom)
    assert steps == ["schools", "classes", "people_created", "people"]
    assert done.status == "failed"
    assert done.failure is not None
    assert "nothing was applied" in done.failure
    assert env.snapshot() == before


def test_interrupted_import_is_picked_up_again(env: Env) -> None:
    run = env.enqueue(csv_bytes(CLASS))
    # a worker claimed it and died: running, lease expired, nothing written
    with env.engine.begin() as conn:
        conn.execute(
            sa.update(ImportRun.__table__)  # type: ignore[attr-defined]
            .where(ImportRun.__table__.c.id == run.id)  # type: ignore[attr-defined]
            .values(status="running", attempts=1, lease_until=utcnow() - timedelta(seconds=1))
        )
    assert env.worker.run_until_idle()[0].id == run.id
    done = env.get(run.id)
    assert done.status == "applied"
    assert done.attempts == 2


def test_a_running_import_with_a_live_lease_is_not_taken(env: Env) -> None:
    run = env.enqueue(csv_bytes(CLASS))
    later = env.enqueue(csv_bytes(CLASS[:19]))
    with env.engine.begin() as conn:
        conn.execute(
            sa.update(ImportRun.__table__)  # type: ignore[attr-defined]
            .where(ImportRun.__table__.c.id == run.id)  # type: ignore[attr-defined]
            .values(status="running", attempts=1, lease_until=utcnow() + timedelta(minutes=5))
        )
    # neither the running one nor the district's next import is claimable meanwhile
    assert env.worker.claim_next() is None
    assert env.get(later.id).status == "queued"


def test_two_imports_of_one_district_are_serialized(env: Env) -> None:
    first = env.enqueue(csv_bytes(CLASS))
    second = env.enqueue(csv_bytes([student(1, student_last_name="Second"), *CLASS[1:]]))
    workers = [ImportWorker(engine=env.engine, settings=env.settings) for _ in range(2)]
    barrier = threading.Barrier(2)
    results: list[Any] = []

    def work(w: ImportWorker) -> None:
        barrier.wait()
        results.append(w.run_until_idle())

    threads = [threading.Thread(target=work, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    env.worker.run_until_idle()
    a, b = env.get(first.id), env.get(second.id)
    assert (a.status, b.status) == ("applied", "applied")
    assert a.finished_at is not None
    assert b.started_at is not None
    # the second ran after the first had committed, and saw its result
    assert b.started_at >= a.finished_at
    assert b.report["changes"]["students"]["updated"] == 1
    assert b.report["changes"]["students"]["created"] == 0
    assert env.people()["kid1@springfield.example.org"][3] == "Second"


def test_direct_runs_of_one_district_at_once_are_serialized(env: Env) -> None:
    """Even without the worker's claim order, the apply lock keeps one import per district at a time."""
    runs = [env.enqueue(csv_bytes(CLASS)), env.enqueue(csv_bytes(CLASS).replace(b"\n", b"\r\n"))]
    barrier = threading.Barrier(2)

    def go(run: ImportRun) -> None:
        barrier.wait()
        run_import(engine=env.engine, settings=env.settings, import_id=run.id)

    threads = [threading.Thread(target=go, args=(r,)) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    env.worker.run_until_idle()  # one released as busy goes back to the queue
    statuses = sorted(env.get(r.id).status for r in runs)
    assert statuses == ["applied", "applied"]
    # never two students for one Clever ID: the second saw the first's roster
    with env.engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from person where role = 'student'")).scalar() == 20


def test_login_bound_clever_id_survives_an_email_only_roster(env: Env) -> None:
    header_no_ids = [
        h for h in csv_bytes([row()]).decode().splitlines()[0].split(",") if not h.endswith("clever_id")
    ]
    others = [student(n) for n in range(2, 5)]
    env.sync(csv_bytes([row(), *others], header_no_ids))
    person_id = env.people()["arnold@springfield.example.org"][0]
    with env.engine.begin() as conn:  # what the resolve engine does at the first login
        conn.execute(
            sa.text("update person set clever_id = :c, clever_id_source = 'login' where id = :p"),
            {"c": S1, "p": person_id},
        )
    run = env.sync(csv_bytes([row(student_first_name="Arnie"), *others], header_no_ids))
    assert run.status == "applied"
    with env.engine.connect() as conn:
        got = conn.execute(
            sa.text("select clever_id, clever_id_source, first_name from person where id = :p"),
            {"p": person_id},
        ).one()
    assert tuple(got) == (S1, "login", "Arnie")


def test_sftp_import_writes_its_result(env: Env) -> None:
    run = env.sync(csv_bytes(CLASS), source="sftp")
    assert run.status == "applied"
    results = env.settings.data_dir / "sftp" / "d1" / "results"
    assert any(p.name.startswith("roster.csv") for p in results.iterdir())


def test_expired_uploads_are_deleted(env: Env) -> None:
    old = env.sync(csv_bytes(CLASS))
    queued = env.enqueue(csv_bytes(CLASS[:3]))
    assert old.upload_path is not None
    assert Path(old.upload_path).exists()
    later = utcnow() + timedelta(days=env.settings.upload_retention_days + 1)
    assert uploads.delete_expired_uploads(engine=env.engine, settings=env.settings, now=later) == 1
    assert not Path(old.upload_path).exists()
    assert env.get(old.id).upload_path is None
    assert queued.upload_path is not None
    assert Path(queued.upload_path).exists()  # a queued import keeps its file


def test_an_import_leaves_the_process_and_the_pooled_connection_as_it_found_them(env: Env) -> None:
    # the import pauses the cyclic collector and (SQLite) enlarges the page cache while it runs
    assert gc.isenabled()
    with env.engine.connect() as conn:
        is_sqlite = conn.dialect.name == "sqlite"
        before = conn.exec_driver_sql("PRAGMA cache_size").scalar() if is_sqlite else None
    seen: list[bool] = []
    run = env.enqueue(csv_bytes(CLASS))
    done = run_import(
        engine=env.engine, settings=env.settings, import_id=run.id, step=lambda _: seen.append(gc.isenabled())
    )
    assert done.status == "applied"
    assert seen
    assert not any(seen)
    assert gc.isenabled()
    if is_sqlite:
        with env.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == before


def test_a_database_error_while_writing_surfaces_and_writes_nothing(env: Env) -> None:
    """On PostgreSQL the rows are written by a background thread: its error must reach the caller
    (not vanish with the thread), stop the remaining writes, and leave the connection usable."""
    plan = Plan()
    plan.schools_new.append(("sch-1", "Lincoln"))
    plan.classes_new.append(("cls-1", "sch-1", "Science"))
    plan.people_new.append(("p_1", "student", None, None, "a@x.org", "A", "B", "3", None))
    plan.enrollments_new.extend([("cls-1", "p_1"), ("cls-1", "p_1")])  # the same key twice
    plan.accounts_new.append(("p_1", "rocketlit", "acct_1"))
    with env.engine.connect() as conn:
        apply_mod.begin(conn)
        apply_mod.lock_district(conn, "d1")
        conn.execute(sa.text("select 1"))  # the transaction the service holds around the writes
        with pytest.raises((sqlite3.IntegrityError, psycopg.errors.UniqueViolation)):
            apply_mod.write_plan(conn, "d1", plan, utcnow())
        conn.rollback()
        assert conn.execute(sa.text("select count(*) from account")).scalar() == 0
    assert all(not rows for rows in env.snapshot().values())


# --- a first import on PostgreSQL writes its enrollments while the file is read -----------------
# (apply.FirstImportStream; SQLite takes the plain path, and every test here holds for both)


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hand the enrollments over every 3 pairs, so a small file streams in several batches."""
    monkeypatch.setattr(normalize_mod, "SINK_BATCH", 3)


@pytest.mark.usefixtures("small_batches")
def test_first_import_writes_the_same_roster_as_any_import(env: Env) -> None:
    rows = [
        *CLASS,
        student(3, class_id="cls-2", class_name="Art"),
        student(21, class_id="cls-2", class_name="Art"),
    ]
    first = env.sync(csv_bytes(rows))
    assert first.status == "applied"
    assert first.report["changes"]["enrollments"]["created"] == 22
    snap = env.snapshot()
    ids = {r[4]: r[0] for r in snap["person"]}  # email -> person id
    expected = {("cls-1", ids[f"kid{n}@springfield.example.org"]) for n in range(1, 21)}
    expected |= {("cls-2", ids[f"kid{n}@springfield.example.org"]) for n in (3, 21)}
    assert {(c, p) for c, p, active in snap["enrollment"] if active} == expected
    assert len(snap["enrollment"]) == 22
    # the person ids the enrollments were written with are the people's ids: the same roster again
    # (other bytes) changes nothing
    again = env.sync(csv_bytes(rows).replace(b"\n", b"\r\n"))
    assert again.status == "applied"
    for entity, change in again.report["changes"].items():
        assert (change["created"], change["updated"], change["deactivated"]) == (0, 0, 0), entity
    assert env.snapshot() == snap


@pytest.mark.usefixtures("small_batches")
def test_first_import_with_an_error_on_its_last_row_writes_nothing(env: Env) -> None:
    done = env.sync(csv_bytes([*CLASS, student(21, student_grade_level="Grade Z")]))
    assert done.status == "rejected"
    assert done.report["errors"][0]["line"] == 22
    assert all(not rows for rows in env.snapshot().values())
    assert env.sync(csv_bytes(CLASS)).status == "applied"  # and the district is not left locked


@pytest.mark.usefixtures("small_batches")
def test_first_import_rejected_after_reading_writes_nothing(env: Env) -> None:
    with env.engine.begin() as conn:
        conn.execute(
            sa.text("update license set seats = 5, enforce_seats = true where product = 'rocketlit'")
        )
    done = env.sync(csv_bytes(CLASS))
    assert done.status == "rejected"
    assert done.report["errors"][0]["code"] == "SEATS_EXCEEDED"
    assert all(not rows for rows in env.snapshot().values())


@pytest.mark.usefixtures("small_batches")
def test_first_import_failing_halfway_through_apply_writes_nothing(env: Env) -> None:
    run = env.enqueue(csv_bytes(CLASS))

    def boom(step: str) -> None:
        if step == "enrollment":
            raise RuntimeError("injected failure")

    done = run_import(engine=env.engine, settings=env.settings, import_id=run.id, step=boom)
    assert done.status == "failed"
    assert all(not rows for rows in env.snapshot().values())
    assert env.sync(csv_bytes(CLASS)).status == "applied"


def test_first_import_refreshes_the_planner_statistics(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL: after a district's first import the roster tables are analyzed (in the background),
    so the next import's plans count the district's rows; nothing of the kind on SQLite."""
    started: list[threading.Thread] = []
    original = apply_mod.refresh_statistics_later

    def spy(engine: sa.Engine) -> threading.Thread:
        thread = original(engine)
        started.append(thread)
        return thread

    def analyzed() -> dict[str, Any]:
        if env.engine.dialect.name != "postgresql":
            return {}
        with env.engine.connect() as conn:
            rows = conn.execute(sa.text("select relname, last_analyze from pg_stat_user_tables"))
            return {name: at for name, at in rows if name in apply_mod.ROSTER_TABLES}

    before = analyzed()
    monkeypatch.setattr(apply_mod, "refresh_statistics_later", spy)
    assert env.sync(csv_bytes(CLASS)).status == "applied"
    if env.engine.dialect.name != "postgresql":
        assert started == []
        return
    (thread,) = started
    thread.join(timeout=30)
    after = analyzed()
    for table in apply_mod.ROSTER_TABLES:
        assert after[table] is not None, table
        assert before.get(table) is None or after[table] > before[table], table
    assert env.sync(csv_bytes(CLASS[:19])).status == "applied"  # not a first import: no refresh
    assert len(started) == 1


def test_new_rows_carry_the_time_of_their_import(env: Env) -> None:
    """On PostgreSQL a COPY leaves created_at/updated_at to the columns' default (the transaction's
    start); on SQLite they are written. Either way: set, in UTC, within the import."""
    before = utcnow() - timedelta(seconds=1)
    env.sync(csv_bytes(CLASS))
    after = utcnow() + timedelta(seconds=1)
    models: tuple[type[School | Section | Person | Account], ...] = (School, Section, Person, Account)
    with Session(env.engine) as session:
        for model in models:
            stamps = session.exec(select(col(model.created_at), col(model.updated_at))).all()
            assert stamps, model
            for created_at, updated_at in stamps:
                assert before <= created_at <= after, model
                assert created_at.tzinfo is not None
                assert before <= updated_at <= after, model


@pytest.mark.usefixtures("small_batches")
@pytest.mark.parametrize("first", [True, False], ids=["first-import", "re-import"])
def test_a_windows_1252_file_found_out_late_is_read_again_from_the_start(env: Env, first: bool) -> None:
    """The import assumes UTF-8 and decodes strictly; a byte that is not UTF-8 on the last row sends
    it back to the start (on PostgreSQL a first import has streamed rows by then: they go)."""
    if not first:
        env.sync(csv_bytes(CLASS[:5]))
    # far enough down that the rows before it were read (and streamed) before the byte is met
    rows = [student(n) for n in range(1, 301)] + [student(301, student_first_name="Zoë")]
    data = csv_text(rows).encode("cp1252")
    assert len(data) > 4 * 8192  # the text layer decodes 8 KiB at a time
    done = env.sync(data)
    assert done.status == "applied", done.report
    warning = next(w for w in done.report["warnings"] if w["code"] == "NOT_UTF8")
    assert warning["line"] == 302
    assert done.report["encoding"] == "windows-1252"
    snap = env.snapshot()
    assert len(snap["enrollment"]) == 301
    assert sum(1 for r in snap["person"] if r[1] == "student") == 301
    assert any(r[5] == "Zoë" for r in snap["person"])


WRITE_STEPS = ["schools", "classes", "people_created", "people", "section_teacher", "enrollment", "accounts"]


@pytest.mark.parametrize("failing", WRITE_STEPS)
def test_a_failure_at_any_step_of_a_resync_leaves_the_roster_as_it_was(env: Env, failing: str) -> None:
    """A re-sync that writes at every step (a new school, class, teacher and student; updates;
    a deactivation and a reactivation of a person, their links and accounts) fails at one step, the
    last one included: the roster is exactly as before, no change is listed for it, and the same file
    applies when run again."""
    env.sync(csv_bytes(CLASS))
    assert env.sync(csv_bytes(CLASS[:19])).status == "applied"  # student 20 deactivated
    before = env.snapshot()
    resync = [
        student(1, student_last_name="Renamed"),
        *CLASS[1:],  # student 20 comes back
        student(
            21,
            school_id="sch-2",
            school_name="Adams",
            class_id="cls-2",
            class_name="Art",
            teacher_clever_id="",
            teacher_email="mr.new@springfield.example.org",
            teacher_first_name="Ned",
            teacher_last_name="New",
        ),
    ]
    run = env.enqueue(csv_bytes(resync))
    steps: list[str] = []

    def boom(step: str) -> None:
        steps.append(step)
        if step == failing:
            raise RuntimeError("injected failure")

    done = run_import(engine=env.engine, settings=env.settings, import_id=run.id, step=boom)
    assert steps == WRITE_STEPS[: WRITE_STEPS.index(failing) + 1]
    assert done.status == "failed"
    assert env.snapshot() == before
    with env.engine.connect() as conn:
        listed = conn.execute(
            sa.text("select count(*) from import_change where import_id = :i"), {"i": run.id}
        )
        assert listed.scalar() == 0
    again = env.sync(csv_bytes(resync))
    assert again.status == "applied", again.failure
    after = env.snapshot()
    for table in SNAPSHOT_SQL:  # each step had something to write
        assert after[table] != before[table], table


@pytest.mark.parametrize("table", ["section_teacher", "enrollment"])
def test_a_failure_while_the_stored_links_are_read_leaves_the_roster_as_it_was(
    env: Env, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stored links are read through a cursor (server-side on PostgreSQL, two rows a fetch here) as
    they are compared; a failure once that read has begun (after one of the one teacher's rows, or three
    of the twenty students') fails the import, leaves the roster exactly as it was, and the next import
    reads them again from the start and applies: no cursor or transaction is left behind."""
    env.sync(csv_bytes(CLASS))
    before = env.snapshot()
    monkeypatch.setattr(links_mod, "_FETCH_ROWS", 2)
    compare = links_mod.StoredLinks.compare
    read: list[str] = []

    def half_read(wanted: Any, stored: Any) -> Any:
        rows = iter(stored)
        read.extend(person for person, _, _ in itertools.islice(rows, 3))
        raise RuntimeError("injected failure")

    def failing_compare(self: links_mod.StoredLinks, wanted: Any) -> Any:
        if self.table == table:
            monkeypatch.setattr(links_mod, "_compare", half_read)
        return compare(self, wanted)

    monkeypatch.setattr(links_mod.StoredLinks, "compare", failing_compare)
    done = env.sync(csv_bytes(CLASS[:19]))
    assert done.status == "failed"
    assert read  # the read had begun
    assert env.snapshot() == before
    monkeypatch.undo()
    again = env.sync(csv_bytes(CLASS[:19]))
    assert again.status == "applied", again.failure
    assert env.snapshot() != before
