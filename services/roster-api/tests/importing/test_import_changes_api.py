"""GET /v1/imports/{id}/changes and changes.csv over real HTTP with the worker, on SQLite and
PostgreSQL: a dry run, a hold and an applied import list what they change; an approved hold lists
its changes anew; filters, pages and bad input."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from roster_api.jobs.worker import ImportWorker
from roster_api.settings import Settings

from .import_rows import csv_bytes, student

FIRST = [student(n, student_grade_level="3") for n in range(1, 11)]


@pytest.fixture
def headers(create_district: Callable[..., dict[str, Any]], make_key: Callable[..., str]) -> dict[str, str]:
    create_district("d1", licenses={"rocketlit": {"seats": 100}})
    create_district("d2")
    return {"Authorization": f"Bearer {make_key('roster:write', 'roster:read', district='d1')}"}


@pytest.fixture
def worker(roster_engine: sa.Engine, roster_settings: Settings) -> ImportWorker:
    return ImportWorker(engine=roster_engine, settings=roster_settings)


def sync(
    client: TestClient, headers: dict[str, str], worker: ImportWorker, rows: list[Any], **params: Any
) -> str:
    response = client.post(
        "/v1/districts/d1/imports",
        files={"file": ("roster.csv", csv_bytes(rows), "text/csv")},
        headers=headers,
        params=params,
    )
    assert response.status_code == 202, response.text
    worker.run_until_idle()
    import_id: str = response.json()["id"]
    return import_id


def get(client: TestClient, headers: dict[str, str], path: str, **params: Any) -> Any:
    response = client.get(path, headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_dry_run_hold_and_apply_list_their_changes(
    client: TestClient, headers: dict[str, str], worker: ImportWorker
) -> None:
    first = sync(client, headers, worker, FIRST)
    listed = get(client, headers, f"/v1/imports/{first}/changes", entity="student")
    assert listed["total"] == 10
    assert {i["kind"] for i in listed["items"]} == {"created"}
    assert listed["counts"] == {"student": {"created": 10, "updated": 0, "deactivated": 0, "reactivated": 0}}

    # a dry run that renames one student, moves one up a grade and drops one
    edited = [
        student(1, student_grade_level="3", student_first_name="=Renamed"),
        student(2, student_grade_level="4"),
        *FIRST[2:9],
    ]
    dry = sync(client, headers, worker, edited, dry_run="true")
    assert get(client, headers, f"/v1/imports/{dry}")["status"] == "validated"
    updated = get(client, headers, f"/v1/imports/{dry}/changes", entity="student", kind="updated")
    assert updated["total"] == 2
    by_id = {i["id"]: i for i in updated["items"]}
    assert by_id[f"{1:024x}"]["fields"] == [{"field": "first_name", "old": "Kid1", "new": "=Renamed"}]
    assert by_id[f"{1:024x}"]["line"] == 2
    assert by_id[f"{2:024x}"]["fields"] == [{"field": "grade", "old": "3", "new": "4"}]
    gone = get(client, headers, f"/v1/imports/{dry}/changes", kind="deactivated")
    assert {(i["entity"], i["id"]) for i in gone["items"]} >= {
        ("student", f"{10:024x}"),
        ("enrollment", f"cls-1 / {10:024x}"),
    }
    assert {i["entity"] for i in gone["items"]} == {"student", "enrollment", "account"}

    text = client.get(f"/v1/imports/{dry}/changes.csv", headers=headers)
    assert text.status_code == 200
    assert text.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(text.text)))
    renamed = next(r for r in rows if r["id"] == f"{1:024x}")
    assert renamed["name"] == "'=Renamed Doe"  # formula-safe
    assert renamed["changes"] == "first_name: Kid1 -> =Renamed"
    all_items = get(client, headers, f"/v1/imports/{dry}/changes", limit=500)
    assert len(rows) == all_items["total"]

    # three of ten students gone: past the 10 % threshold, held
    held = sync(client, headers, worker, FIRST[:7])
    assert get(client, headers, f"/v1/imports/{held}")["status"] == "held"
    held_gone = get(client, headers, f"/v1/imports/{held}/changes", entity="student", kind="deactivated")
    assert sorted(i["id"] for i in held_gone["items"]) == [f"{n:024x}" for n in (8, 9, 10)]

    # approved, it runs again against the roster as it is then, and lists its changes anew
    response = client.post(f"/v1/imports/{held}/approve", headers=headers)
    assert response.status_code == 202, response.text
    worker.run_until_idle()
    assert get(client, headers, f"/v1/imports/{held}")["status"] == "applied"
    again = get(client, headers, f"/v1/imports/{held}/changes", entity="student")
    assert again["total"] == 3
    assert again["has_more"] is False
    assert get(client, headers, f"/v1/imports/{held}/changes", entity="student", limit=2)["has_more"] is True
    assert (
        get(client, headers, f"/v1/imports/{held}/changes", limit=2, offset=0)["items"]
        == get(client, headers, f"/v1/imports/{held}/changes", limit=500)["items"][:2]
    )


def test_changes_of_a_rejected_import_are_empty_and_bad_input_is_4xx(
    client: TestClient, headers: dict[str, str], worker: ImportWorker, make_key: Callable[..., str]
) -> None:
    rejected = sync(client, headers, worker, [student(1, student_first_name="")])
    report = get(client, headers, f"/v1/imports/{rejected}")
    assert report["status"] == "rejected"
    # readiness is in every report, a file rejected before it was compared too
    assert [w["code"] for w in report["report"]["readiness"]] == ["NO_CLEVER_LINK"]
    assert get(client, headers, f"/v1/imports/{rejected}/changes")["total"] == 0
    for params in ({"entity": "teachers"}, {"kind": "moved"}, {"limit": 0}, {"offset": -1}):
        response = client.get(f"/v1/imports/{rejected}/changes", headers=headers, params=params)
        assert response.status_code == 422, params
        assert "error" in response.json()
    assert client.get("/v1/imports/imp_nope/changes", headers=headers).status_code == 404
    assert client.get("/v1/imports/imp_nope/changes.csv", headers=headers).status_code == 404
    # another district's key sees no such import
    other = {"Authorization": f"Bearer {make_key('roster:read', district='d2')}"}
    response = client.get(f"/v1/imports/{rejected}/changes.csv", headers=other)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "IMPORT_NOT_FOUND"


def test_report_carries_readiness_warnings(
    client: TestClient, headers: dict[str, str], worker: ImportWorker
) -> None:
    rows = [student(1), student(2, student_clever_id="", student_email="kid2@springfield.example.org")]
    done = sync(client, headers, worker, rows)
    report = get(client, headers, f"/v1/imports/{done}")["report"]
    codes = {w["code"]: w for w in report["readiness"]}
    assert "NO_LICENSE" not in codes
    assert codes["NO_CLEVER_LINK"]["message"].endswith("nobody can log in with Clever yet.")
    assert codes["MATCHED_BY_EMAIL"]["count"] == 1
    assert codes["MATCHED_BY_EMAIL"]["message"].startswith("1 person will be matched by email")
