"""Notices delivered for real: an SMTP server in-process (TLS, STARTTLS refused, down, silent), an HTTP
receiver (200, 500, 410, hanging), on SQLite and PostgreSQL, through the app's own start-up wiring; the
district's notice settings and webhook secret over the API."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlmodel import Session, select

from roster_api import notices
from roster_api.importing import outcomes
from roster_api.jobs.nightly import run_nightly
from roster_api.models import NoticeDelivery
from roster_api.settings import Environment

from .conftest import Certificate, Receiver, SmtpServer
from .notice_helpers import (
    CONTACTS,
    assert_clean_logs,
    attempts,
    dispatcher_of,
    make_district,
    smtp_url,
    stored_import,
    summary,
    verify,
)

# The SMTP side of these does not depend on the database; the others run on both.
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@SQLITE_ONLY
def test_publishing_an_outcome_returns_at_once_while_the_receiver_hangs(
    start_app: Callable[..., TestClient],
    receiver: Receiver,
    admin_headers: dict[str, str],
    roster_engine: sa.Engine,
) -> None:
    client = start_app(notice_timeout_seconds=5.0, notice_max_attempts=1)
    make_district(client, admin_headers, webhook_url=receiver.url)
    receiver.plan = ["hang"]
    started = time.monotonic()
    outcomes.publish(stored_import(roster_engine))
    assert time.monotonic() - started < 0.5
    receiver.release.set()
    assert dispatcher_of(client).drain(10)


def test_a_webhook_answering_500_is_retried_with_the_same_delivery_id_until_it_takes_it(
    start_app: Callable[..., TestClient],
    receiver: Receiver,
    smtp_server: SmtpServer,
    admin_headers: dict[str, str],
    roster_engine: sa.Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    client = start_app(notice_max_attempts=3, smtp_url=smtp_url(smtp_server.port))
    created = make_district(client, admin_headers, contacts=CONTACTS, webhook_url=receiver.url)
    secret = created["notices"]["webhook_secret"]
    receiver.plan = [500, 503]
    outcome = stored_import(roster_engine)
    outcomes.publish(outcome)
    assert dispatcher_of(client).drain(10)
    assert summary(attempts(client, admin_headers, outcome.import_id)) == [
        ("email", "partner.example", 1, "delivered", 250),
        ("email", "springfield.example.org", 1, "delivered", 250),
        ("webhook", "127.0.0.1", 1, "retrying", 500),
        ("webhook", "127.0.0.1", 2, "retrying", 503),
        ("webhook", "127.0.0.1", 3, "delivered", 200),
    ]
    assert len({d.headers["X-Roster-Delivery"] for d in receiver.deliveries}) == 1
    assert all(verify(secret, d.headers, d.body) for d in receiver.deliveries)
    assert receiver.deliveries[0].json()["type"] == "import.rejected"
    assert sorted(m.recipients[0] for m in smtp_server.sink.messages) == [
        "Ops@partner.example",
        "it-team@springfield.example.org",
    ]
    assert_clean_logs(caplog, secret)


def test_a_webhook_refusing_the_request_is_not_retried(
    start_app: Callable[..., TestClient],
    receiver: Receiver,
    admin_headers: dict[str, str],
    roster_engine: sa.Engine,
) -> None:
    client = start_app()
    make_district(client, admin_headers, webhook_url=receiver.url)
    receiver.plan = [410]
    outcome = stored_import(roster_engine)
    outcomes.publish(outcome)
    assert dispatcher_of(client).drain(10)
    assert summary(attempts(client, admin_headers, outcome.import_id)) == [
        ("webhook", "127.0.0.1", 1, "undelivered", 410)
    ]
    # purging the district takes its notice settings and delivery log with it
    purged = client.delete("/v1/districts/d1", params={"confirm": "d1"}, headers=admin_headers)
    assert purged.status_code == 200, purged.text
    assert purged.json()["counts"]["notice_setting"] == 1
    assert purged.json()["counts"]["notice_delivery"] == 1


@SQLITE_ONLY
def test_smtps_speaks_tls_from_the_first_byte(
    start_app: Callable[..., TestClient],
    smtps_server: SmtpServer,
    certificate: Certificate,
    admin_headers: dict[str, str],
    roster_engine: sa.Engine,
) -> None:
    client = start_app(smtp_url=smtp_url(smtps_server.port, scheme="smtps"), smtp_ca_file=certificate.cert)
    make_district(client, admin_headers, contacts=CONTACTS[:1])
    outcome = stored_import(roster_engine)
    outcomes.publish(outcome)
    assert dispatcher_of(client).drain(10)
    [mail] = smtps_server.sink.messages
    assert mail.tls


@SQLITE_ONLY
def test_no_mail_in_clear_when_starttls_is_required_and_not_offered(
    start_app: Callable[..., TestClient],
    smtp_server: SmtpServer,
    admin_headers: dict[str, str],
    roster_engine: sa.Engine,
) -> None:
    client = start_app(smtp_url=smtp_url(smtp_server.port, "?starttls=1"))
    make_district(client, admin_headers, contacts=CONTACTS[:1])
    second = stored_import(roster_engine)
    outcomes.publish(second)
    assert dispatcher_of(client).drain(10)
    assert smtp_server.sink.messages == []
    [attempt] = attempts(client, admin_headers, second.import_id)
    assert (attempt["outcome"], attempt["detail"]) == ("undelivered", "the server does not offer STARTTLS")


@SQLITE_ONLY
def test_a_silent_smtp_server_times_out_and_is_given_up(
    start_app: Callable[..., TestClient],
    silent_port: int,
    admin_headers: dict[str, str],
    roster_engine: sa.Engine,
) -> None:
    client = start_app(smtp_url=smtp_url(silent_port), notice_timeout_seconds=0.2, notice_max_attempts=2)
    make_district(client, admin_headers, contacts=CONTACTS[:1])
    outcome = stored_import(roster_engine)
    outcomes.publish(outcome)
    assert dispatcher_of(client).drain(10)
    assert [
        (a["attempt"], a["outcome"], a["detail"]) for a in attempts(client, admin_headers, outcome.import_id)
    ] == [
        (1, "retrying", "timed out"),
        (2, "undelivered", "timed out"),
    ]


def test_a_rotated_secret_signs_the_next_delivery(
    start_app: Callable[..., TestClient],
    receiver: Receiver,
    admin_headers: dict[str, str],
    roster_engine: sa.Engine,
) -> None:
    client = start_app()
    old = make_district(client, admin_headers, webhook_url=receiver.url)["notices"]["webhook_secret"]
    response = client.post("/v1/districts/d1/notices/webhook-secret", headers=admin_headers)
    assert response.status_code == 200, response.text
    new = response.json()["webhook_secret"]
    assert new != old
    outcomes.publish(stored_import(roster_engine))
    assert dispatcher_of(client).drain(10)
    [delivery] = receiver.deliveries
    assert verify(new, delivery.headers, delivery.body)
    assert not verify(old, delivery.headers, delivery.body)
    audit = client.get("/v1/audit", headers=admin_headers, params={"district_id": "d1"})
    assert new not in audit.text
    assert old not in audit.text


def test_a_nightly_sync_without_its_file_tells_the_contacts(
    start_app: Callable[..., TestClient],
    smtp_server: SmtpServer,
    admin_headers: dict[str, str],
    roster_engine: sa.Engine,
) -> None:
    client = start_app(smtp_url=smtp_url(smtp_server.port))
    make_district(client, admin_headers, contacts=CONTACTS[:1])
    settings = client.app.state.settings  # type: ignore[attr-defined]
    now = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    [night] = run_nightly(engine=roster_engine, settings=settings, now=now, district_ids=["d1"])
    assert night.outcome == "no_file"
    # an outcome that needs nobody's attention is not told
    notices.nightly_notice(district_id="d1", run_date=night.run_date, outcome="skipped", file_name="x.csv")
    assert dispatcher_of(client).drain(10)
    [mail] = smtp_server.sink.messages
    assert "nightly sync found no file" in mail.message["Subject"]
    with Session(roster_engine) as session:
        [attempt] = session.exec(select(NoticeDelivery)).all()
    assert (attempt.reference, attempt.import_id, attempt.event, attempt.outcome) == (
        f"nightly-d1-{night.run_date}",
        None,
        "nightly.no_file",
        "delivered",
    )


# --- the settings ------------------------------------------------------------------------------


BAD_SETTINGS = [
    ({"contacts": ["not-an-address"]}, "notices.contacts.0"),
    ({"contacts": ["a@b.example\r\nBcc: x@y.example"]}, "notices.contacts.0"),
    ({"contacts": [f"u{i}@d.example" for i in range(21)]}, "notices.contacts"),
    ({"webhook_url": "ftp://sis.example/x"}, "notices.webhook_url"),
    ({"webhook_url": "https://user:pw@sis.example/x"}, "notices.webhook_url"),
    ({"webhook_url": "https://sis.example:99999/x"}, "notices.webhook_url"),
    ({"webhook_url": "https://[::1/x"}, "notices.webhook_url"),
    ({"webhook_url": "https://sis example/x"}, "notices.webhook_url"),
    ({"webhook_url": 42}, "notices.webhook_url"),
    ({"contacts": "it@d.example"}, "notices.contacts"),
    ({"webhook_url": "https://sis.example/" + "x" * 2000}, "notices.webhook_url"),
    ({"secret": "x"}, "notices.secret"),
]


def test_bad_notice_settings_are_422_with_the_field(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    for notice, field in BAD_SETTINGS:
        body = {"id": "d1", "name": "D1", "notices": notice}
        response = client.post("/v1/districts", json=body, headers=admin_headers)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "VALIDATION_ERROR"
        assert any(d["field"].startswith(field) for d in error["details"]), (notice, error)


def test_webhook_must_be_https_in_production_and_can_be_removed(
    start_app: Callable[..., TestClient], admin_headers: dict[str, str]
) -> None:
    client = start_app(environment=Environment.PRODUCTION, hash_pepper=SecretStr("a-real-pepper-value"))
    make_district(client, admin_headers)
    refused = client.patch(
        "/v1/districts/d1", json={"notices": {"webhook_url": "http://sis.example/x"}}, headers=admin_headers
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["details"][0]["field"] == "notices.webhook_url"
    rotate = client.post("/v1/districts/d1/notices/webhook-secret", headers=admin_headers)
    assert rotate.status_code == 409
    set_it = client.patch(
        "/v1/districts/d1", json={"notices": {"webhook_url": "https://sis.example/x"}}, headers=admin_headers
    )
    assert set_it.json()["notices"]["webhook_secret"].startswith("whsec_")
    changed = client.patch(
        "/v1/districts/d1", json={"notices": {"webhook_url": "https://sis.example/y"}}, headers=admin_headers
    )
    assert changed.json()["notices"]["webhook_secret"] is None, "the secret is shown only when made"
    removed = client.patch("/v1/districts/d1", json={"notices": {"webhook_url": None}}, headers=admin_headers)
    assert removed.json()["notices"] == {
        "contacts": [],
        "webhook_url": None,
        "webhook_secret_set": False,
        "webhook_secret_rotated_at": None,
        "webhook_secret": None,
    }
