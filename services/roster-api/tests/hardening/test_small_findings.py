"""The smaller findings of the attack run: a 405 lists every allowed method; a 500 quotes its request id
and logs no driver message; a number is not a date; 0 and 1 are not booleans."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from roster_api.main import create_app
from roster_api.settings import Settings


def test_405_lists_every_method_of_the_path(client: TestClient, admin_headers: dict[str, str]) -> None:
    # GET (list) and POST (create) are two routes at one path; Starlette alone named only the first
    response = client.delete("/v1/districts", headers=admin_headers)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_a_500_quotes_its_request_id_and_logs_no_values(
    roster_settings: Settings, admin_headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(roster_settings)
    secret = "leaky.student@example.org"

    @app.get("/boom")
    def boom() -> None:
        raise sa.exc.IntegrityError(
            "INSERT INTO person (email) VALUES (%(email)s)", {"email": secret}, ValueError(secret)
        )

    caplog.set_level(logging.INFO)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom", headers={"X-Request-ID": "rid-500"})
    assert response.status_code == 500
    assert response.json()["error"]["message"] == "Internal error; quote request id rid-500."
    assert response.headers["x-request-id"] == "rid-500"
    errors = [r for r in caplog.records if r.name == "errors"]
    assert len(errors) == 1
    fields = errors[0].fields  # type: ignore[attr-defined]
    assert fields["error"] == "IntegrityError"
    assert fields["statement"] == "INSERT INTO person (email) VALUES (%(email)s)"
    assert secret not in caplog.text
    assert errors[0].exc_info is None


@pytest.mark.parametrize("value", ["0.5", "1700000000", "tomorrow", "2026-13-45"])
def test_a_number_is_not_a_date(client: TestClient, admin_headers: dict[str, str], value: str) -> None:
    for name in ("since", "until"):
        response = client.get("/v1/audit", params={name: value}, headers=admin_headers)
        assert response.status_code == 422, (name, value, response.text)
        assert response.json()["error"]["details"][0]["field"] == name


@pytest.mark.parametrize("value", ["2026-09-01", "2026-09-01T08:00:00Z", "2026-09-01T08:00:00.123456+02:00"])
def test_iso_dates_are_dates(client: TestClient, admin_headers: dict[str, str], value: str) -> None:
    response = client.get("/v1/audit", params={"until": value}, headers=admin_headers)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("value", [0, 1, "true", "yes"])
def test_booleans_are_booleans(
    client: TestClient,
    admin_headers: dict[str, str],
    create_district: Callable[..., dict[str, Any]],
    value: Any,
) -> None:
    refused = client.post(
        "/v1/districts",
        json={"id": "d2", "name": "D2", "sync": {"import_on_upload": value}},
        headers=admin_headers,
    )
    assert refused.status_code == 422, refused.text
    create_district("d1")
    patched = client.patch(
        "/v1/districts/d1", json={"sync": {"import_on_upload": value}}, headers=admin_headers
    )
    assert patched.status_code == 422, patched.text
    licensed = client.patch(
        "/v1/districts/d1",
        json={"licenses": {"rocketlit": {"seats": 5, "enforce_seats": value}}},
        headers=admin_headers,
    )
    assert licensed.status_code == 422, licensed.text
    ok = client.patch("/v1/districts/d1", json={"sync": {"import_on_upload": False}}, headers=admin_headers)
    assert ok.status_code == 200, ok.text
