"""Health, readiness, the error envelope, request ids and metrics."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from roster_api.main import create_app
from roster_api.settings import Settings


def test_healthz_and_readyz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


@pytest.fixture
def database_down(tmp_path: Path) -> Settings:
    """Settings whose database nobody listens on."""
    return Settings(
        database_url="postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1",
        data_dir=tmp_path,
        run_worker=False,
        run_scheduler=False,
    )


def test_readyz_fails_when_database_is_unreachable(database_down: Settings) -> None:
    with TestClient(create_app(database_down), raise_server_exceptions=False) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert "unreachable" in response.json()["error"]["message"]


def test_api_answers_503_not_500_when_the_database_is_down(database_down: Settings) -> None:
    with TestClient(create_app(database_down), raise_server_exceptions=False) as client:
        response = client.get("/v1/districts", headers={"Authorization": "Bearer rk_whatever"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert response.headers["retry-after"] == "5"


def test_readyz_fails_when_database_is_not_migrated(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/empty.db", data_dir=tmp_path, run_worker=False)
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert "roster-api migrate" in response.json()["error"]["message"]


def test_unknown_route_and_method_use_the_envelope(client: TestClient) -> None:
    response = client.get("/v1/nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"
    response = client.put("/healthz")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_unexpected_errors_are_500_envelopes_without_internals(
    app: object, roster_settings: Settings
) -> None:
    from fastapi import FastAPI

    assert isinstance(app, FastAPI)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internal detail")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    assert response.status_code == 500
    body = response.json()
    assert body["error"]["code"] == "INTERNAL_ERROR"
    assert "secret internal detail" not in response.text


def test_request_id_is_accepted_returned_and_logged(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="http"):
        response = client.get("/readyz", headers={"X-Request-ID": "support-ticket-42"})
    assert response.headers["x-request-id"] == "support-ticket-42"
    # a hostile id is replaced, not echoed
    response = client.get("/readyz", headers={"X-Request-ID": "bad id\r\nX-Evil: 1"})
    assert response.headers["x-request-id"] != "bad id\r\nX-Evil: 1"
    assert len(response.headers["x-request-id"]) == 32
    assert any(
        r.getMessage() == "request" and getattr(r, "fields", {}).get("route") == "/readyz"
        for r in caplog.records
    )


def test_metrics_count_requests(client: TestClient) -> None:
    client.get("/healthz")
    text = client.get("/metrics").text
    assert 'http_requests_total{method="GET",route="/healthz",status="200"}' in text


def test_openapi_docs_are_served(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "/v1/districts" in spec["paths"]
    assert client.get("/docs").status_code == 200
