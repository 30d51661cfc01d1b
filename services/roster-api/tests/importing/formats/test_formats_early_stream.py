"""A district's first import of a OneRoster bulk package on PostgreSQL hands its student enrollments to
the stream while enrollments.csv is read (oneroster._EarlyPairs); what is stored is exactly the
roster's enrollments, with the rows that are not a student's link (a repeated pair, a parent's row, a
class whose school is left out for its status) not among them; if what went early ever differed, the
import reads again and still stores the roster's. On SQLite (no stream) the same holds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from roster_api.importing.formats import oneroster
from roster_api.jobs.worker import ImportWorker
from roster_api.settings import Settings

from .helpers import files_of, zip_bytes

EXPECTED = {("C1", "S1"), ("C1", "S2"), ("C2", "S3"), ("C2", "S4"), ("C3", "S4"), ("C3", "S5")}


def _package() -> bytes:
    """The fixture with rows that are not a student's link: S1 in C1 again under another sourcedId,
    a parent enrolled as a student, and class C4 at a school left out for its status."""
    files = files_of("oneroster11")
    files["orgs.csv"] += b"sch-9,tobedeleted,,Closed School,school,,dist-1\n"
    files["classes.csv"] += b"C4,,,Closed Class,03,crs-1,X,scheduled,,sch-9,term-1,,,\n"
    files["enrollments.csv"] += (
        b"E20,,,C1,sch-1,S1,student,,,\n"  # the same pair as E2
        b"E21,,,C1,sch-1,P1,student,,,\n"  # a parent
        b"E22,,,C4,sch-9,S1,student,,,\n"  # a class left out with its school
    )
    return zip_bytes(files)


def _stored(engine: sa.Engine) -> set[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("select e.class_id, p.sis_id from enrollment e join person p on p.id = e.person_id")
        )
        return {(c, s) for c, s in rows}


def _first_import(
    client: TestClient, headers: dict[str, str], engine: sa.Engine, settings: Settings
) -> dict[str, Any]:
    response = client.post(
        "/v1/districts/d1/imports",
        content=_package(),
        headers={**headers, "Content-Type": "application/zip"},
    )
    assert response.status_code == 202, response.text
    ImportWorker(engine=engine, settings=settings).run_until_idle()
    done: dict[str, Any] = client.get(f"/v1/imports/{response.json()['id']}", headers=headers).json()
    return done


@pytest.fixture
def writer(make_key: Callable[..., str], create_district: Callable[..., dict[str, Any]]) -> dict[str, str]:
    create_district("d1", licenses={"rocketlit": {"seats": 100}})
    return {"Authorization": f"Bearer {make_key('roster:write', 'roster:read', district='d1')}"}


def test_the_early_enrollments_are_the_rosters(
    client: TestClient,
    writer: dict[str, str],
    roster_engine: sa.Engine,
    roster_settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    done = _first_import(client, writer, roster_engine, roster_settings)
    assert "early enrollments differ" not in caplog.text  # read once: the early pairs were right
    assert done["status"] == "applied", done["report"].get("errors")
    assert done["report"]["summary"]["enrollments"] == len(EXPECTED)
    assert _stored(roster_engine) == EXPECTED


def test_early_enrollments_that_differ_are_read_again(
    client: TestClient,
    writer: dict[str, str],
    roster_engine: sa.Engine,
    roster_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A reader slip (simulated: S5 handed on in C1 too) is caught before anything is applied."""
    add = oneroster._EarlyPairs.add

    def slipping(self: oneroster._EarlyPairs, klass: str, user: str) -> None:
        add(self, klass, user)
        if user == "S5":
            add(self, "C1", user)

    add_all = oneroster._EarlyPairs.add_all  # a chunk of rows at a time (a quote-free file)

    def slipping_all(
        self: oneroster._EarlyPairs, klasses: list[str], users: list[str], roles: list[str]
    ) -> None:
        add_all(self, klasses, users, roles)
        if "S5" in users:
            add(self, "C1", "S5")

    monkeypatch.setattr(oneroster._EarlyPairs, "add", slipping)
    monkeypatch.setattr(oneroster._EarlyPairs, "add_all", slipping_all)
    done = _first_import(client, writer, roster_engine, roster_settings)
    assert done["status"] == "applied", done["report"].get("errors")
    assert _stored(roster_engine) == EXPECTED
    assert ("early enrollments differ" in caplog.text) is (roster_engine.dialect.name == "postgresql")
