"""The lifecycle of held imports, on SQLite and PostgreSQL: a district's newest import is its truth, so
an older hold is superseded when a newer import is applied or held; a hold not decided in time expires;
every transition is audited and announced to the outcome subscribers after commit."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from roster_api.db import session_scope
from roster_api.importing import outcomes, service, uploads
from roster_api.importing.outcomes import ImportOutcome
from roster_api.importing.run import run_import
from roster_api.intake.results import district_sftp_dir
from roster_api.jobs.worker import ImportWorker
from roster_api.models import AuditEvent, District, ImportRun, utcnow
from roster_api.settings import Settings

from .import_rows import csv_bytes, student

ROSTER_A = [student(n) for n in range(1, 101)]
SMALL = [student(n) for n in range(1, 21)]  # where the size does not matter: halving it is a hold


@pytest.fixture
def district(create_district: Callable[..., dict[str, Any]]) -> str:
    create_district("d1", licenses={"rocketlit": {"seats": 1000}, "innerorbit": {"seats": 1000}})
    return "d1"


@pytest.fixture
def writer(make_key: Callable[..., str], district: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key('roster:write', 'roster:read', district=district)}"}


@pytest.fixture
def worker(roster_engine: sa.Engine, roster_settings: Settings) -> ImportWorker:
    return ImportWorker(engine=roster_engine, settings=roster_settings)


@pytest.fixture
def announced() -> Iterator[list[ImportOutcome]]:
    seen: list[ImportOutcome] = []
    outcomes.subscribe(seen.append)
    yield seen
    outcomes.unsubscribe(seen.append)


def upload(client: TestClient, headers: dict[str, str], data: bytes) -> str:
    response = client.post(
        "/v1/districts/d1/imports", files={"file": ("roster.csv", data, "text/csv")}, headers=headers
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def status_of(engine: sa.Engine, import_id: str) -> ImportRun:
    with Session(engine) as session:
        run = session.get(ImportRun, import_id)
        assert run is not None
        return run


def active_students(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("select email from person where role = 'student' and active"))
        return {r[0] for r in rows}


def audit_actions(engine: sa.Engine, target: str) -> list[str]:
    with Session(engine) as session:
        events = session.exec(select(AuditEvent).where(AuditEvent.target == target)).all()
        return [e.action for e in sorted(events, key=lambda e: e.id or 0)]


def test_an_old_hold_cannot_be_approved_over_a_newer_roster(
    client: TestClient,
    writer: dict[str, str],
    worker: ImportWorker,
    roster_engine: sa.Engine,
    announced: list[ImportOutcome],
) -> None:
    """A (100 students) applied; C (the first 50) held; B2 (A + one) applied; approving C must not
    deactivate 50 students: 409 IMPORT_SUPERSEDED naming B2, and the roster stays B2."""
    a = upload(client, writer, csv_bytes(ROSTER_A))
    worker.run_until_idle()
    c = upload(client, writer, csv_bytes(ROSTER_A[:50]))
    worker.run_until_idle()
    assert status_of(roster_engine, c).status == "held"
    b2 = upload(client, writer, csv_bytes([*ROSTER_A, student(101)]))
    worker.run_until_idle()
    assert status_of(roster_engine, a).status == "applied"
    assert status_of(roster_engine, b2).status == "applied"

    for action in ("approve", "discard"):
        answer = client.post(f"/v1/imports/{c}/{action}", headers=writer)
        assert answer.status_code == 409, answer.text
        error = answer.json()["error"]
        assert error["code"] == "IMPORT_SUPERSEDED"
        assert b2 in error["message"]
        assert error["details"] == [{"field": "superseded_by", "message": b2}]
    worker.run_until_idle()
    assert active_students(roster_engine) == {f"kid{n}@springfield.example.org" for n in range(1, 102)}
    body = client.get(f"/v1/imports/{c}", headers=writer).json()
    assert (body["status"], body["superseded_by"]) == ("superseded", b2)
    assert audit_actions(roster_engine, c) == ["import.upload", "import.hold", "import.supersede"]
    assert audit_actions(roster_engine, b2) == ["import.upload", "import.apply"]
    assert [(o.import_id, o.status) for o in announced] == [
        (a, "applied"),
        (c, "held"),
        (b2, "applied"),
        (c, "superseded"),
    ]
    assert announced[-1].superseded_by == b2


def test_a_newer_hold_supersedes_an_older_one_and_a_dry_run_does_not(
    client: TestClient, writer: dict[str, str], worker: ImportWorker, roster_engine: sa.Engine
) -> None:
    upload(client, writer, csv_bytes(SMALL))
    worker.run_until_idle()
    first = upload(client, writer, csv_bytes(SMALL[:10]))
    worker.run_until_idle()
    preview = client.post(
        "/v1/districts/d1/imports",
        params={"dry_run": "true"},
        files={"file": ("roster.csv", csv_bytes(SMALL[:2]), "text/csv")},
        headers=writer,
    ).json()["id"]
    worker.run_until_idle()
    assert status_of(roster_engine, preview).status == "validated"
    assert status_of(roster_engine, first).status == "held"  # a dry run decides nothing
    second = upload(client, writer, csv_bytes(SMALL[:8]))
    worker.run_until_idle()
    assert status_of(roster_engine, second).status == "held"
    superseded = status_of(roster_engine, first)
    assert (superseded.status, superseded.superseded_by) == ("superseded", second)
    # the newest hold is the one to decide
    assert client.post(f"/v1/imports/{second}/discard", headers=writer).json()["status"] == "discarded"
    assert len(active_students(roster_engine)) == 20


def test_an_approved_hold_is_never_applied_over_a_newer_import(
    roster_engine: sa.Engine, roster_settings: Settings, district: str, tmp_path: Path
) -> None:
    """Even when run directly out of order: the approved older hold is superseded, not applied."""

    def enqueue(rows: list[dict[str, str]], name: str) -> str:
        path = tmp_path / name
        path.write_bytes(csv_bytes(rows))
        run = uploads.enqueue_file(
            engine=roster_engine,
            settings=roster_settings,
            district_id="d1",
            source="api",
            src_path=path,
            filename=name,
            created_by="test",
        )
        return run.id

    def run(import_id: str) -> str:
        return run_import(engine=roster_engine, settings=roster_settings, import_id=import_id).status

    assert run(enqueue(SMALL, "a.csv")) == "applied"
    held = enqueue(SMALL[:10], "c.csv")
    assert run(held) == "held"
    with session_scope(roster_engine) as session:
        record = session.get(ImportRun, held)
        assert record is not None
        service.approve(session=session, run=record, actor="support")
    newer = enqueue([*SMALL, student(21)], "b2.csv")
    assert run(newer) == "applied"
    assert run(held) == "superseded"
    assert status_of(roster_engine, held).superseded_by == newer
    assert len(active_students(roster_engine)) == 21


def test_a_hold_expires_after_the_districts_days(
    client: TestClient,
    writer: dict[str, str],
    admin_headers: dict[str, str],
    worker: ImportWorker,
    roster_engine: sa.Engine,
    announced: list[ImportOutcome],
) -> None:
    changed = client.patch("/v1/districts/d1", json={"sync": {"hold_expire_days": 2}}, headers=admin_headers)
    assert changed.status_code == 200, changed.text
    assert changed.json()["sync"]["hold_expire_days"] == 2
    upload(client, writer, csv_bytes(SMALL))
    worker.run_until_idle()
    held = upload(client, writer, csv_bytes(SMALL[:10]))
    worker.run_until_idle()
    later = utcnow() + timedelta(days=1, hours=23)
    assert service.expire_holds(engine=roster_engine, now=later) == []
    assert status_of(roster_engine, held).status == "held"
    assert service.expire_holds(engine=roster_engine, now=later + timedelta(hours=2)) == [held]
    assert status_of(roster_engine, held).status == "expired"
    answer = client.post(f"/v1/imports/{held}/approve", headers=writer)
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "IMPORT_EXPIRED"
    assert audit_actions(roster_engine, held)[-1] == "import.expire"
    assert (announced[-1].import_id, announced[-1].status) == (held, "expired")
    assert len(active_students(roster_engine)) == 20


def test_an_overdue_hold_expires_when_someone_tries_to_approve_it(
    client: TestClient, writer: dict[str, str], worker: ImportWorker, roster_engine: sa.Engine
) -> None:
    upload(client, writer, csv_bytes(SMALL))
    worker.run_until_idle()
    held = upload(client, writer, csv_bytes(SMALL[:10]))
    worker.run_until_idle()
    with session_scope(roster_engine) as session:  # held 15 days ago (the default is 14)
        record = session.get(ImportRun, held)
        assert record is not None
        assert record.finished_at is not None
        record.finished_at -= timedelta(days=15)
        session.add(record)
    answer = client.post(f"/v1/imports/{held}/approve", headers=writer)
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "IMPORT_EXPIRED"
    assert status_of(roster_engine, held).status == "expired"
    worker.run_until_idle()
    assert len(active_students(roster_engine)) == 20


def test_deciding_a_running_or_another_districts_import_is_refused(
    client: TestClient,
    writer: dict[str, str],
    make_key: Callable[..., str],
    create_district: Callable[..., dict[str, Any]],
    roster_engine: sa.Engine,
) -> None:
    queued = upload(client, writer, csv_bytes(SMALL))
    with session_scope(roster_engine) as session:
        record = session.get(ImportRun, queued)
        assert record is not None
        record.status = "running"
        session.add(record)
    answer = client.post(f"/v1/imports/{queued}/approve", headers=writer)
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "IMPORT_NOT_HELD"
    create_district("d2")
    other = {"Authorization": f"Bearer {make_key('roster:write', district='d2')}"}
    for action in ("approve", "discard"):
        answer = client.post(f"/v1/imports/{queued}/{action}", headers=other)
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "IMPORT_NOT_FOUND"


def test_the_results_file_of_a_superseded_sftp_hold_says_so(
    roster_engine: sa.Engine, roster_settings: Settings, district: str, tmp_path: Path
) -> None:
    worker = ImportWorker(engine=roster_engine, settings=roster_settings)

    def sftp(rows: list[dict[str, str]]) -> str:
        path = tmp_path / "roster.csv"
        path.write_bytes(csv_bytes(rows))
        run = uploads.enqueue_file(
            engine=roster_engine,
            settings=roster_settings,
            district_id="d1",
            source="sftp",
            src_path=path,
            filename="roster.csv",
            created_by="sftp:d1",
        )
        worker.run_until_idle()
        return run.id

    sftp(SMALL)
    held = sftp(SMALL[:10])
    newer = sftp([*SMALL, student(21)])
    results = district_sftp_dir(roster_settings, "d1") / "results"
    texts = [p.read_text() for p in results.glob(f"*-{held[-6:]}.txt")]
    assert len(texts) == 1  # the held import's results file, replaced
    assert "HELD" not in texts[0]
    assert newer in texts[0]  # "... the newer file (reference <newer>) is the one ..."
    assert status_of(roster_engine, newer).status == "applied"


def test_unknown_district_in_sweep_is_harmless(roster_engine: sa.Engine, district: str) -> None:
    with session_scope(roster_engine) as session:
        assert session.get(District, "d1") is not None
    assert service.expire_holds(engine=roster_engine, district_id="nope") == []


def test_the_workers_sweep_expires_overdue_holds(
    client: TestClient, writer: dict[str, str], worker: ImportWorker, roster_engine: sa.Engine
) -> None:
    upload(client, writer, csv_bytes(SMALL))
    worker.run_until_idle()
    held = upload(client, writer, csv_bytes(SMALL[:10]))
    worker.run_until_idle()
    worker.sweep()
    assert status_of(roster_engine, held).status == "held"
    with session_scope(roster_engine) as session:
        record = session.get(ImportRun, held)
        assert record is not None
        assert record.finished_at is not None
        record.finished_at -= timedelta(days=14, minutes=1)
        session.add(record)
    worker.sweep()
    assert status_of(roster_engine, held).status == "expired"
