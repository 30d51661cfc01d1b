"""The overview's seats and logged-in shares come from the district's kept figures (roster.figures):
counted after each applied import, by the worker for districts that have none, and after a view that
found them missing or stale; never while the view waits."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session

from roster_api.console.readiness import readiness
from roster_api.jobs.worker import ImportWorker
from roster_api.models import Account, District, DistrictFigures, LoginAttempt, Person, utcnow
from roster_api.roster import figures

from .helpers import GOOD_CSV, csrf_of


def _add_student(engine: sa.Engine, n: int, *, logged_in: bool) -> None:
    with Session(engine) as session:
        session.add(Person(district_id="d1", id=f"p_fig{n}", role="student", first_name="F", last_name="G"))
        session.add(Account(district_id="d1", person_id=f"p_fig{n}", product="rocketlit", account_id=f"a{n}"))
        if logged_in:
            session.add(
                LoginAttempt(
                    reference=f"LA-FIG{n:05d}",
                    product="rocketlit",
                    district_id="d1",
                    clever_district_id="0" * 24,
                    clever_user_id=f"{n:024x}",
                    clever_role="student",
                    outcome="success",
                    person_id=f"p_fig{n}",
                )
            )
        session.commit()


def _age_figures(engine: sa.Engine, minutes: int) -> None:
    with Session(engine) as session:
        row = session.get(DistrictFigures, "d1")
        assert row is not None
        row.counted_at = utcnow() - timedelta(minutes=minutes)
        session.add(row)
        session.commit()


def test_overview_shows_kept_figures_and_recounts_stale_ones(
    as_d1_admin: TestClient, roster_engine: sa.Engine
) -> None:
    _add_student(roster_engine, 1, logged_in=True)
    first = as_d1_admin.get("/console/d/d1")
    assert first.status_code == 200
    assert "being counted for the first time" in first.text  # counted after the response
    counted = as_d1_admin.get("/console/d/d1")
    assert "rocketlit: 1 of 100 seats" in counted.text
    assert "100% (1 of 1)" in counted.text
    assert "being counted" not in counted.text

    _add_student(roster_engine, 2, logged_in=False)
    kept = as_d1_admin.get("/console/d/d1")
    assert "rocketlit: 1 of 100 seats" in kept.text  # fresh figures are not counted again

    _age_figures(roster_engine, minutes=6)
    stale = as_d1_admin.get("/console/d/d1")
    assert "rocketlit: 1 of 100 seats" in stale.text  # shown at once, recounted after the response
    recounted = as_d1_admin.get("/console/d/d1")
    assert "rocketlit: 2 of 100 seats" in recounted.text
    assert "50% (1 of 2)" in recounted.text


def test_licenses_show_at_once_and_an_applied_import_recounts(
    as_d1_admin: TestClient, roster_engine: sa.Engine, roster_settings: Any
) -> None:
    assert "rocketlit: 100 seats (seats used being counted)" in as_d1_admin.get("/console/d/d1").text
    assert "rocketlit: 0 of 100 seats" in as_d1_admin.get("/console/d/d1").text
    token = csrf_of(as_d1_admin.get("/console/d/d1/upload").text)
    uploaded = as_d1_admin.post(
        "/console/d/d1/upload",
        data={"csrf_token": token, "mode": "apply"},
        files={"file": ("roster.csv", GOOD_CSV.encode(), "text/csv")},
    )
    assert uploaded.status_code == 303, uploaded.text
    runs = ImportWorker(engine=roster_engine, settings=roster_settings).run_until_idle()
    assert [run.status for run in runs] == ["applied"]
    with Session(roster_engine) as session:
        row = session.get(DistrictFigures, "d1")
        assert row is not None
        assert row.counts["seats_used"] == {"rocketlit": 2}
    assert "rocketlit: 2 of 100 seats" in as_d1_admin.get("/console/d/d1").text


def test_a_recount_already_running_in_the_process_is_not_started_again(
    as_d1_admin: TestClient, roster_engine: sa.Engine
) -> None:
    assert as_d1_admin.get("/console/d/d1").status_code == 200
    _age_figures(roster_engine, minutes=6)
    figures._counting.add("d1")  # as while another overview's recount runs
    try:
        figures.recount_quietly(roster_engine, "d1")
    finally:
        figures._counting.discard("d1")
    with Session(roster_engine) as session:
        row = session.get(DistrictFigures, "d1")
        assert row is not None
        assert row.counted_at < utcnow() - timedelta(minutes=5)
    figures.recount_quietly(roster_engine, "d1")
    with Session(roster_engine) as session:
        row = session.get(DistrictFigures, "d1")
        assert row is not None
        assert row.counted_at > utcnow() - timedelta(minutes=1)


def test_a_first_overview_answers_without_counting_and_leaves_the_count_for_after(
    as_d1_admin: TestClient, roster_engine: sa.Engine
) -> None:
    _add_student(roster_engine, 1, logged_in=True)
    later: list[tuple[Any, ...]] = []
    with Session(roster_engine) as session:
        district = session.get(District, "d1")
        assert district is not None
        shown = readiness(session=session, district=district, later=lambda *call: later.append(call))
    assert shown.counted_at is None
    assert shown.logged_in == []
    assert "(seats used being counted)" in shown.checks[0].detail
    with Session(roster_engine) as session:
        assert session.get(DistrictFigures, "d1") is None  # nothing counted while the view waited
    assert [call[0] for call in later] == [figures.recount_quietly]
    later[0][0](*later[0][1:])  # what the response's background task runs
    with Session(roster_engine) as session:
        row = session.get(DistrictFigures, "d1")
        assert row is not None
        assert row.counts["seats_used"] == {"rocketlit": 1}


def test_the_worker_counts_districts_without_figures_once_idle(
    districts: list[str], roster_engine: sa.Engine, roster_settings: Any
) -> None:
    worker = ImportWorker(engine=roster_engine, settings=roster_settings)
    _add_student(roster_engine, 1, logged_in=False)
    worker._wake.set()  # an import was queued: it goes first
    assert worker.count_missing_figures() is False
    with Session(roster_engine) as session:
        assert figures.districts_without_figures(session=session) == ["d1", "d2"]
    worker._wake.clear()
    assert worker.count_missing_figures() is True
    with Session(roster_engine) as session:
        assert figures.districts_without_figures(session=session) == []
        row = session.get(DistrictFigures, "d1")
        assert row is not None
        assert row.counts["seats_used"] == {"rocketlit": 1}


def test_a_started_worker_counts_them_when_the_queue_is_empty(
    districts: list[str], roster_engine: sa.Engine, roster_settings: Any
) -> None:
    worker = ImportWorker(
        engine=roster_engine, settings=roster_settings.model_copy(update={"worker_poll_seconds": 30.0})
    )
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with Session(roster_engine) as session:
                if not figures.districts_without_figures(session=session):
                    break
            time.sleep(0.05)
    finally:
        worker.stop()
    with Session(roster_engine) as session:
        assert figures.districts_without_figures(session=session) == []
