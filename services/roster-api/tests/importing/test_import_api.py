"""The import HTTP API with the worker, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from roster_api.jobs.worker import ImportWorker
from roster_api.settings import Settings

from .import_rows import csv_bytes, row, student


@pytest.fixture
def district(create_district: Callable[..., dict[str, Any]]) -> str:
    create_district("d1", licenses={"rocketlit": {"seats": 100}, "innerorbit": {"seats": 100}})
    return "d1"


@pytest.fixture
def writer(make_key: Callable[..., str], district: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key('roster:write', 'roster:read', district=district)}"}


@pytest.fixture
def worker(roster_engine: sa.Engine, roster_settings: Settings) -> ImportWorker:
    return ImportWorker(engine=roster_engine, settings=roster_settings)


def upload(client: TestClient, headers: dict[str, str], data: bytes, **params: Any) -> dict[str, Any]:
    response = client.post(
        "/v1/districts/d1/imports",
        files={"file": ("roster.csv", data, "text/csv")},
        headers=headers,
        params=params,
    )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def fetch(client: TestClient, headers: dict[str, str], import_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/imports/{import_id}", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_upload_multipart_then_worker_applies(
    client: TestClient, writer: dict[str, str], worker: ImportWorker, roster_settings: Settings
) -> None:
    queued = upload(client, writer, csv_bytes([row(), student(2)]))
    assert queued["status"] == "queued"
    assert queued["filename"] == "roster.csv"
    stored = roster_settings.data_dir / "uploads" / "d1" / f"{queued['id']}.csv"
    assert stored.exists()
    assert stored.stat().st_mode & 0o777 == 0o600
    worker.run_until_idle()
    done = fetch(client, writer, queued["id"])
    assert done["status"] == "applied"
    report = done["report"]
    assert report["summary"] == {
        "rows": 2,
        "schools": 1,
        "teachers": 1,
        "classes": 1,
        "students": 2,
        "enrollments": 2,
    }
    assert report["changes"]["students"]["created"] == 2
    assert report["seats"]["rocketlit"] == {"licensed": 100, "used": 2, "enforced": False}
    assert report["encoding"] == "utf-8"
    assert report["delimiter"] == "comma"
    assert len(report["sha256"]) == 64
    assert set(report["timings"]) >= {"parse_ms", "apply_ms", "total_ms"}


def test_raw_text_csv_body_and_dry_run(
    client: TestClient, writer: dict[str, str], worker: ImportWorker, roster_engine: sa.Engine
) -> None:
    response = client.post(
        "/v1/districts/d1/imports",
        content=csv_bytes([row()]),
        headers={**writer, "Content-Type": "text/csv"},
        params={"dry_run": "true", "filename": "roster.csv"},
    )
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/v1/imports/{response.json()['id']}"
    worker.run_until_idle()
    done = fetch(client, writer, response.json()["id"])
    assert done["status"] == "validated"
    assert done["dry_run"] is True
    assert done["report"]["changes"]["students"]["created"] == 1
    with roster_engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from person")).scalar() == 0


def test_upload_over_the_limit_is_413_and_leaves_nothing(
    app: Any, client: TestClient, writer: dict[str, str], roster_settings: Settings
) -> None:
    app.state.settings = roster_settings.model_copy(update={"max_upload_bytes": 1000})
    big = csv_bytes([student(n) for n in range(1, 50)])
    url = "/v1/districts/d1/imports"
    multipart = client.post(url, files={"file": ("roster.csv", big, "text/csv")}, headers=writer)
    raw = client.post(url, content=big, headers={**writer, "Content-Type": "text/csv"})
    for response in (multipart, raw):
        assert response.status_code == 413, response.text
        assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    uploads = roster_settings.data_dir / "uploads" / "d1"
    assert list(uploads.iterdir()) == []
    assert client.get("/v1/districts/d1/imports", headers=writer).json()["total"] == 0


def test_streamed_body_over_the_limit_without_content_length(
    app: Any, client: TestClient, writer: dict[str, str], roster_settings: Settings
) -> None:
    app.state.settings = roster_settings.model_copy(update={"max_upload_bytes": 1000})

    def chunks() -> Any:
        for _ in range(100):
            yield b"x" * 100

    response = client.post(
        "/v1/districts/d1/imports", content=chunks(), headers={**writer, "Content-Type": "text/csv"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"


def test_wrong_media_type_and_missing_file_field(client: TestClient, writer: dict[str, str]) -> None:
    response = client.post("/v1/districts/d1/imports", json={"csv": "x"}, headers=writer)
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    response = client.post("/v1/districts/d1/imports", files={"other": ("a.csv", b"x")}, headers=writer)
    assert response.status_code == 422
    assert "file" in response.json()["error"]["message"]


def test_unknown_district_and_import_are_404(
    client: TestClient, writer: dict[str, str], admin_headers: dict[str, str]
) -> None:
    response = client.post(
        "/v1/districts/nope/imports", content=b"x", headers={**admin_headers, "Content-Type": "text/csv"}
    )
    assert response.status_code == 404
    response = client.get("/v1/imports/imp_doesnotexist", headers=writer)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "IMPORT_NOT_FOUND"


def test_rejected_import_and_formula_safe_errors_csv(
    client: TestClient, writer: dict[str, str], worker: ImportWorker
) -> None:
    bad = csv_bytes([row(student_clever_id="=cmd|' /C calc'!A0", student_email="")])
    queued = upload(client, writer, bad)
    worker.run_until_idle()
    done = fetch(client, writer, queued["id"])
    assert done["status"] == "rejected"
    assert done["error_count"] == 1
    (error,) = done["report"]["errors"]
    assert (error["line"], error["column"], error["code"]) == (2, "student_clever_id", "INVALID_CLEVER_ID")
    response = client.get(f"/v1/imports/{queued['id']}/errors.csv", headers=writer)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["severity", "line", "column", "code", "message", "hint"]
    assert rows[1][:4] == ["error", "2", "student_clever_id", "INVALID_CLEVER_ID"]
    for cell in (c for r in rows for c in r):
        assert not cell.startswith(("=", "+", "-", "@")), cell


def test_list_is_newest_first_and_paginated(client: TestClient, writer: dict[str, str]) -> None:
    ids = [upload(client, writer, csv_bytes([student(n)]))["id"] for n in range(1, 4)]
    page = client.get("/v1/districts/d1/imports", params={"limit": 2}, headers=writer).json()
    assert page["total"] == 3
    assert [i["id"] for i in page["items"]] == ids[::-1][:2]
    assert "report" not in page["items"][0]


def test_held_import_approve_and_discard_over_http(
    client: TestClient, writer: dict[str, str], worker: ImportWorker, roster_engine: sa.Engine
) -> None:
    upload(client, writer, csv_bytes([student(n) for n in range(1, 11)]))
    worker.run_until_idle()
    held = upload(client, writer, csv_bytes([student(1)]))
    worker.run_until_idle()
    body = fetch(client, writer, held["id"])
    assert body["status"] == "held"
    assert body["report"]["hold"]["reasons"][0]["entity"] == "students"
    discarded = client.post(f"/v1/imports/{held['id']}/discard", headers=writer)
    assert discarded.status_code == 200
    assert discarded.json()["status"] == "discarded"
    again = client.post(f"/v1/imports/{held['id']}/approve", headers=writer)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "IMPORT_NOT_HELD"

    held = upload(client, writer, csv_bytes([student(1), student(2)]))
    worker.run_until_idle()
    approved = client.post(f"/v1/imports/{held['id']}/approve", headers=writer)
    assert approved.status_code == 202
    assert approved.json()["status"] == "queued"
    worker.run_until_idle()
    body = fetch(client, writer, held["id"])
    assert body["status"] == "applied"
    assert body["report"]["hold"] == {
        "held": True,
        "approved": True,
        "reasons": body["report"]["hold"]["reasons"],
    }
    with roster_engine.connect() as conn:
        active = conn.execute(
            sa.text("select count(*) from person where role = 'student' and active")
        ).scalar()
    assert active == 2


def test_other_districts_key_cannot_see_the_import(
    client: TestClient,
    writer: dict[str, str],
    make_key: Callable[..., str],
    create_district: Callable[..., dict[str, Any]],
) -> None:
    create_district("d2")
    queued = upload(client, writer, csv_bytes([row()]))
    other = {"Authorization": f"Bearer {make_key('roster:write', 'roster:read', district='d2')}"}
    for method, path in (
        ("GET", f"/v1/imports/{queued['id']}"),
        ("GET", f"/v1/imports/{queued['id']}/errors.csv"),
        ("POST", f"/v1/imports/{queued['id']}/approve"),
    ):
        assert client.request(method, path, headers=other).status_code == 404


def test_worker_runs_inside_the_app(
    roster_settings: Settings, make_key: Callable[..., str], admin_headers: dict[str, str], tmp_path: Path
) -> None:
    from roster_api.main import create_app

    settings = roster_settings.model_copy(update={"run_worker": True, "worker_poll_seconds": 0.05})
    with TestClient(create_app(settings)) as client:
        client.post("/v1/districts", json={"id": "d1", "name": "D1"}, headers=admin_headers)
        queued = upload(client, admin_headers, csv_bytes([row()]))
        import time

        deadline = time.monotonic() + 20
        status = "queued"
        while time.monotonic() < deadline and status in {"queued", "running"}:
            time.sleep(0.05)
            status = fetch(client, admin_headers, queued["id"])["status"]
        assert status == "applied"


def test_an_upload_wakes_the_worker_of_its_process(
    roster_settings: Settings, admin_headers: dict[str, str]
) -> None:
    """The worker polls every 30 s here; an upload (and an approval) through this app is picked up at
    once, because the commit that queues it wakes the worker (importing/queue.py: wake_after_commit)."""
    import time

    from roster_api.main import create_app

    settings = roster_settings.model_copy(update={"run_worker": True, "worker_poll_seconds": 30.0})

    def wait_for(client: TestClient, import_id: str, wanted: str) -> float:
        started = time.monotonic()
        status = ""
        while time.monotonic() - started < 10 and status != wanted:
            time.sleep(0.02)
            status = fetch(client, admin_headers, import_id)["status"]
        assert status == wanted
        return time.monotonic() - started

    with TestClient(create_app(settings)) as client:
        client.post("/v1/districts", json={"id": "d1", "name": "D1"}, headers=admin_headers)
        time.sleep(0.5)  # the worker has found the queue empty and sleeps its 30 s poll
        first = upload(client, admin_headers, csv_bytes([row(**student(1)), row(**student(2))]))
        assert wait_for(client, first["id"], "applied") < 5
        held = upload(client, admin_headers, csv_bytes([row(**student(3))]))  # deactivates 2 of 2
        assert wait_for(client, held["id"], "held") < 5
        approved = client.post(f"/v1/imports/{held['id']}/approve", headers=admin_headers)
        assert approved.status_code == 202, approved.text
        assert wait_for(client, held["id"], "applied") < 5
