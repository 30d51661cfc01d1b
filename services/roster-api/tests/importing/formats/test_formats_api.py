"""End to end over HTTP and the worker: a OneRoster zip (raw application/zip), then the same district
as Clever's files (multipart), then a OneRoster delta; a dangerous zip is rejected with a report, never
a 500; the kept upload has no passwords or birth dates."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from roster_api.jobs.worker import ImportWorker
from roster_api.settings import Settings

from .helpers import DATA, files_of, zip_bytes


@pytest.fixture
def writer(make_key: Callable[..., str], create_district: Callable[..., dict[str, Any]]) -> dict[str, str]:
    create_district("d1", licenses={"rocketlit": {"seats": 100}})
    return {"Authorization": f"Bearer {make_key('roster:write', 'roster:read', district='d1')}"}


def _run(
    client: TestClient, engine: sa.Engine, settings: Settings, headers: dict[str, str], **post: Any
) -> Any:
    response = client.post("/v1/districts/d1/imports", headers=post.pop("send_headers", headers), **post)
    assert response.status_code == 202, response.text
    ImportWorker(engine=engine, settings=settings).run_until_idle()
    done = client.get(f"/v1/imports/{response.json()['id']}", headers=headers)
    assert done.status_code == 200
    return done.json()


def test_oneroster_then_clever_then_a_delta(
    client: TestClient, writer: dict[str, str], roster_engine: sa.Engine, roster_settings: Settings
) -> None:
    body = zip_bytes(files_of("oneroster11"))
    first = _run(
        client,
        roster_engine,
        roster_settings,
        writer,
        content=body,
        send_headers={**writer, "Content-Type": "application/zip"},
    )
    assert first["status"] == "applied", first["report"].get("errors")
    report = first["report"]
    assert (report["format"], report["version"], report["mode"]) == ("oneroster", "1.1", "bulk")
    assert report["changes"]["students"]["created"] == 5
    assert report["changes"]["class_teachers"]["created"] == 4
    stored = next((roster_settings.data_dir / "uploads" / "d1").iterdir()).read_bytes()
    assert b"PK" in stored[:2]
    assert b"Hunter2-secret" not in stored  # (deflated: also checked uncompressed in test_formats_zip)

    clever = _run(
        client,
        roster_engine,
        roster_settings,
        writer,
        files={"file": ("clever.zip", zip_bytes(files_of("clever2")), "application/zip")},
    )
    assert clever["status"] == "applied"
    assert clever["report"]["format"] == "clever"
    changes = clever["report"]["changes"]
    for entity in ("schools", "classes", "teachers", "students", "enrollments", "class_teachers"):
        assert (changes[entity]["created"], changes[entity]["updated"], changes[entity]["deactivated"]) == (
            0,
            0,
            0,
        )

    users = (DATA / "oneroster11" / "users.csv").read_bytes().splitlines()[0] + b"\n"
    users += b"S5,tobedeleted,2026-12-01T00:00:00Z,true,sch-2,student,bpoe,,Bob,Poe,,,,,,,12,\n"
    manifest = b"propertyName,value\nmanifest.version,1.0\noneroster.version,1.1\nfile.users,delta\n"
    delta = _run(
        client,
        roster_engine,
        roster_settings,
        writer,
        files={
            "file": (
                "delta.zip",
                zip_bytes({"manifest.csv": manifest, "users.csv": users}),
                "application/zip",
            )
        },
    )
    # one of five students leaves: over the 10 % safety threshold, so it waits for an approval, and
    # then runs again from the kept (reduced) copy of the upload
    assert delta["status"] == "held", delta["report"].get("errors")
    approved = client.post(f"/v1/imports/{delta['id']}/approve", headers=writer)
    assert approved.status_code == 202, approved.text
    ImportWorker(engine=roster_engine, settings=roster_settings).run_until_idle()
    delta = client.get(f"/v1/imports/{delta['id']}", headers=writer).json()
    assert delta["status"] == "applied"
    assert delta["report"]["mode"] == "delta"
    assert delta["report"]["changes"]["students"]["deactivated"] == 1
    assert delta["report"]["changes"]["students"]["unchanged"] == 4


def test_a_dangerous_zip_or_a_bad_package_is_rejected_with_file_line_and_column(
    client: TestClient, writer: dict[str, str], roster_engine: sa.Engine, roster_settings: Settings
) -> None:
    attack = zip_bytes({"../../etc/cron.d/x": b"* * * * * root sh"})
    done = _run(
        client, roster_engine, roster_settings, writer, files={"file": ("x.zip", attack, "application/zip")}
    )
    assert done["status"] == "rejected"
    assert [e["code"] for e in done["report"]["errors"]] == ["UNSAFE_ZIP"]
    files = files_of("clever2")
    files["enrollments.csv"] += b"sch-1,C1,S404\n"
    done = _run(
        client,
        roster_engine,
        roster_settings,
        writer,
        files={"file": ("c.zip", zip_bytes(files), "application/zip")},
    )
    assert done["status"] == "rejected"
    (error,) = done["report"]["errors"]
    assert (error["file"], error["line"], error["column"], error["code"]) == (
        "enrollments.csv",
        8,
        "Student_id",
        "UNKNOWN_REFERENCE",
    )
    errors_csv = client.get(f"/v1/imports/{done['id']}/errors.csv", headers=writer)
    assert "enrollments.csv, line 8" in errors_csv.text
