"""Helpers of the notice tests: starting the app with notice settings, a district with notice
settings, an import row to announce, the delivery log, and what a receiver does to verify a webhook."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlmodel import Session

from roster_api.importing.outcomes import ImportOutcome
from roster_api.models import ImportRun
from roster_api.notices import NoticeDispatcher
from roster_shared.web import JsonFormatter

CONTACTS = ["it-team@springfield.example.org", "Ops@Partner.example"]
# what the roster holds and a notice must never carry
STUDENT_PII = ("Arnold", "Perlstein", "arnold@", "Kid2", "kid2@", "Nguy", "Frizzle", "Valerie")


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """What a receiver does (the README's example, written out again here)."""
    signed = headers["X-Roster-Timestamp"].encode() + b"." + body
    expected = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["X-Roster-Signature"])


def smtp_url(port: int, query: str = "", scheme: str = "smtp") -> SecretStr:
    return SecretStr(f"{scheme}://127.0.0.1:{port}{query}")


def dispatcher_of(client: TestClient) -> NoticeDispatcher:
    dispatcher = client.app.state.notices  # type: ignore[attr-defined]
    assert isinstance(dispatcher, NoticeDispatcher)
    return dispatcher


def make_district(client: TestClient, headers: dict[str, str], **notice: Any) -> dict[str, Any]:
    body = {"id": "d1", "name": "Springfield USD", "licenses": {"rocketlit": {"seats": 100}}}
    response = client.post("/v1/districts", json=body | {"notices": notice}, headers=headers)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def stored_import(engine: sa.Engine, status: str = "rejected") -> ImportOutcome:
    """An import row as the worker leaves it, and its outcome: for the failure modes of delivery."""
    report = {"error_count": 1, "errors": [{"line": 2, "column": "student_email", "code": "INVALID_EMAIL"}]}
    run = ImportRun(
        id="imp_" + str(time.monotonic_ns())[-12:],
        district_id="d1",
        status=status,
        source="sftp",
        report=report,
    )
    with Session(engine) as session:
        session.add(run)
        session.commit()
        return ImportOutcome(
            import_id=run.id, district_id="d1", status=status, source="sftp", dry_run=False, report=report
        )


def attempts(client: TestClient, headers: dict[str, str], import_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/v1/imports/{import_id}/notices", headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def summary(items: list[dict[str, Any]]) -> list[tuple[str, str, int, str, int | None]]:
    return sorted((i["channel"], i["target"], i["attempt"], i["outcome"], i["code"]) for i in items)


def assert_clean_logs(caplog: pytest.LogCaptureFixture, *secrets: str) -> None:
    """No contact address, webhook token, secret or student data in any log record, fields included."""
    formatter = JsonFormatter("roster-api")
    lines = "\n".join(formatter.format(record) for record in caplog.records)
    for forbidden in (*secrets, "it-team@", "ops@", "do-not-log", *STUDENT_PII):
        assert forbidden.lower() not in lines.lower(), forbidden
