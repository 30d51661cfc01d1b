"""Notices of real imports: the worker runs an import, the import code announces its outcome after
commit, and the app's notice sender delivers it (STARTTLS mail, signed webhook) or gives up (SMTP down,
webhook hanging) while the import ends all the same. Mail, webhook body and logs carry no student data."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from roster_api.jobs.worker import ImportWorker
from roster_harness import free_port

from ..importing.import_rows import csv_bytes, row, student
from .conftest import Certificate, Receiver, SmtpServer
from .notice_helpers import (
    CONTACTS,
    STUDENT_PII,
    assert_clean_logs,
    attempts,
    dispatcher_of,
    make_district,
    smtp_url,
    summary,
    verify,
)


def rejected_upload(client: TestClient, headers: dict[str, str]) -> str:
    bad = csv_bytes([row(), student(2, student_email="kid2@@springfield.example.org"), student(3)])
    response = client.post(
        "/v1/districts/d1/imports", files={"file": ("roster.csv", bad, "text/csv")}, headers=headers
    )
    assert response.status_code == 202, response.text
    import_id: str = response.json()["id"]
    return import_id


def test_a_rejected_import_reaches_contacts_by_starttls_and_the_webhook_signed(
    start_app: Callable[..., TestClient],
    starttls_server: SmtpServer,
    certificate: Certificate,
    receiver: Receiver,
    admin_headers: dict[str, str],
    make_key: Callable[..., str],
    roster_engine: sa.Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    client = start_app(smtp_url=smtp_url(starttls_server.port), smtp_ca_file=certificate.cert)
    created = make_district(client, admin_headers, contacts=CONTACTS, webhook_url=receiver.url)
    secret = created["notices"]["webhook_secret"]
    assert secret.startswith("whsec_")
    assert created["notices"]["contacts"] == ["it-team@springfield.example.org", "Ops@partner.example"]
    shown_again = client.get("/v1/districts/d1", headers=admin_headers).json()["notices"]
    assert shown_again["webhook_secret"] is None
    assert shown_again["webhook_secret_set"] is True
    writer = {"Authorization": f"Bearer {make_key('roster:write', 'roster:read', district='d1')}"}

    import_id = rejected_upload(client, writer)
    [run] = ImportWorker(engine=roster_engine, settings=client.app.state.settings).run_until_idle()  # type: ignore[attr-defined]
    assert run.status == "rejected"
    assert dispatcher_of(client).drain(10)

    mails = starttls_server.sink.messages
    assert sorted(m.recipients[0] for m in mails) == sorted(
        ["it-team@springfield.example.org", "Ops@partner.example"]
    )
    for mail in mails:
        assert mail.tls, "sent after STARTTLS"
        assert mail.sender == "roster@rocketlit.example"
        assert f"reference {import_id}" in mail.message["Subject"]
        text = mail.message.get_body(("plain",))
        html = mail.message.get_body(("html",))
        assert text is not None
        assert html is not None
        content = text.get_content() + html.get_content()
        assert "line 3, column student_email: not an email address (INVALID_EMAIL)" in content
        for pii in STUDENT_PII:
            assert pii not in content, pii

    [delivery] = receiver.deliveries
    assert verify(secret, delivery.headers, delivery.body)
    assert delivery.json()["type"] == "import.rejected"
    assert delivery.json()["reference"] == import_id
    assert not any(pii in delivery.body.decode() for pii in STUDENT_PII)

    log = attempts(client, writer, import_id)
    assert summary(log) == [
        ("email", "partner.example", 1, "delivered", 250),
        ("email", "springfield.example.org", 1, "delivered", 250),
        ("webhook", "127.0.0.1", 1, "delivered", 200),
    ]
    assert {i["event"] for i in log} == {"rejected"}
    assert_clean_logs(caplog, secret)


def test_smtp_down_and_a_hanging_webhook_never_hold_up_the_import(
    start_app: Callable[..., TestClient],
    receiver: Receiver,
    admin_headers: dict[str, str],
    make_key: Callable[..., str],
    roster_engine: sa.Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    client = start_app(smtp_url=smtp_url(free_port()), notice_timeout_seconds=0.3, notice_max_attempts=2)
    created = make_district(client, admin_headers, contacts=CONTACTS[:1], webhook_url=receiver.url)
    receiver.plan = ["hang", "hang"]
    writer = {"Authorization": f"Bearer {make_key('roster:write', 'roster:read', district='d1')}"}

    import_id = rejected_upload(client, writer)
    [run] = ImportWorker(engine=roster_engine, settings=client.app.state.settings).run_until_idle()  # type: ignore[attr-defined]
    assert run.status == "rejected"
    assert client.get(f"/v1/imports/{import_id}", headers=writer).json()["status"] == "rejected"
    assert dispatcher_of(client).drain(10)

    log = attempts(client, writer, import_id)
    assert summary(log) == [
        ("email", "springfield.example.org", 1, "retrying", None),
        ("email", "springfield.example.org", 2, "undelivered", None),
        ("webhook", "127.0.0.1", 1, "retrying", None),
        ("webhook", "127.0.0.1", 2, "undelivered", None),
    ]
    assert {i["detail"] for i in log if i["channel"] == "webhook"} == {"timed out"}
    assert len(receiver.deliveries) == 2
    assert_clean_logs(caplog, created["notices"]["webhook_secret"])


def test_an_applied_import_nobody_can_use_yet_is_told(
    start_app: Callable[..., TestClient],
    smtp_server: SmtpServer,
    admin_headers: dict[str, str],
    make_key: Callable[..., str],
    roster_engine: sa.Engine,
) -> None:
    """A new district without a license or a Clever link: the roster applies, and its contacts hear that
    nobody can use it yet."""
    client = start_app(smtp_url=smtp_url(smtp_server.port))
    body = {"id": "d1", "name": "Springfield USD", "notices": {"contacts": CONTACTS[:1]}}
    assert client.post("/v1/districts", json=body, headers=admin_headers).status_code == 201
    writer = {"Authorization": f"Bearer {make_key('roster:write', 'roster:read', district='d1')}"}
    good = csv_bytes([row(), student(2)])
    response = client.post(
        "/v1/districts/d1/imports", files={"file": ("roster.csv", good, "text/csv")}, headers=writer
    )
    assert response.status_code == 202, response.text
    [run] = ImportWorker(engine=roster_engine, settings=client.app.state.settings).run_until_idle()  # type: ignore[attr-defined]
    assert run.status == "applied"
    assert dispatcher_of(client).drain(10)
    [mail] = smtp_server.sink.messages
    assert "roster applied, with warnings" in mail.message["Subject"]
    text = mail.message.get_body(("plain",))
    assert text is not None
    content = text.get_content()
    assert "need your attention" in content
    assert "nobody gets an account" in content
    for pii in STUDENT_PII:
        assert pii not in content, pii
