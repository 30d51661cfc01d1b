"""The plumbing both services share: envelope for every error, request ids, JSON logs without secrets."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from roster_shared.errors import ApiError, ErrorCode, ErrorEnvelope
from roster_shared.web import JsonFormatter, install_observability, request_id_var


class Body(BaseModel):
    seats: int


def make_app() -> FastAPI:
    app = FastAPI()
    install_observability(app, "test")

    @app.post("/things")
    def create(body: Body) -> dict[str, int]:
        return {"seats": body.seats}

    @app.get("/conflict")
    def conflict() -> None:
        raise ApiError("Already there.", code=ErrorCode.CONFLICT, status_code=409, details=[{"field": "id"}])

    @app.get("/crash")
    def crash() -> None:
        raise ValueError("password=hunter2")

    return app


@pytest.fixture
def client() -> TestClient:
    return TestClient(make_app(), raise_server_exceptions=False)


def test_validation_errors_name_the_field_but_not_the_value(client: TestClient) -> None:
    response = client.post("/things", json={"seats": "jane.doe@example.org"})
    assert response.status_code == 422
    body = ErrorEnvelope.model_validate(response.json())
    assert body.error.code is ErrorCode.VALIDATION_ERROR
    assert body.error.details[0]["field"] == "seats"
    assert "jane.doe" not in response.text


def test_api_errors_render_their_envelope(client: TestClient) -> None:
    response = client.get("/conflict")
    assert response.status_code == 409
    assert response.json() == {
        "error": {"code": "CONFLICT", "message": "Already there.", "details": [{"field": "id"}]}
    }


def test_unexpected_errors_hide_their_message(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    response = client.get("/crash", headers={"X-Request-ID": "req-1"})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "INTERNAL_ERROR"
    assert "hunter2" not in response.text


def test_json_formatter_adds_request_id_and_fields() -> None:
    token = request_id_var.set("abc")
    try:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("world",), None)
        record.fields = {"count": 3}
        line = json.loads(JsonFormatter("svc").format(record))
    finally:
        request_id_var.reset(token)
    assert line["msg"] == "hello world"
    assert line["request_id"] == "abc"
    assert line["service"] == "svc"
    assert line["count"] == 3
    assert line["ts"].endswith("+00:00")


@pytest.mark.parametrize(
    "created",
    [0.0, 1.9999996, 1764553413.0, 1764553413.0005, 1764553413.9995, 1764553413.9999996, 297501584.9939995],
)
def test_log_timestamp_is_the_utc_isoformat_to_the_millisecond(created: float) -> None:
    """The formatter caches the date and time to the second; the line says what datetime would."""
    formatter = JsonFormatter("svc")
    formatter.format(logging.LogRecord("x", logging.INFO, __file__, 1, "warm", None, None))  # another second
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    record.created = created
    expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    assert json.loads(formatter.format(record))["ts"] == expected
    record.created = created + 0.25  # within or just past the cached second
    expected = datetime.fromtimestamp(created + 0.25, UTC).isoformat(timespec="milliseconds")
    assert json.loads(formatter.format(record))["ts"] == expected


def test_access_log_has_no_query_string(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="http"):
        client.post("/things?code=SECRETCODE&state=S", json={"seats": 1})
    logged = " ".join(json.dumps(getattr(r, "fields", {})) + r.getMessage() for r in caplog.records)
    assert "/things" in logged
    assert "SECRETCODE" not in logged


def test_metrics_labels_stay_bounded_for_odd_methods(client: TestClient) -> None:
    for i in range(3):
        client.request(f"BREW{i}", "/things")
    text = client.get("/metrics").text
    assert "BREW" not in text
    assert 'method="OTHER",route="unmatched"' in text or 'method="OTHER",route="/things"' in text
