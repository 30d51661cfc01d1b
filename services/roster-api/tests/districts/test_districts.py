from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

CLEVER = "5adf3107d395a8000199343e"


def test_create_read_update_district(client: TestClient, admin_headers: dict[str, str]) -> None:
    body = {
        "id": "springfield-usd",
        "name": "Springfield USD",
        "clever_district_id": CLEVER,
        "licenses": {"rocketlit": {"seats": 500}, "innerorbit": {"seats": 100, "enforce_seats": True}},
    }
    created = client.post("/v1/districts", json=body, headers=admin_headers)
    assert created.status_code == 201, created.text
    data = created.json()
    assert data["licenses"]["rocketlit"] == {"seats": 500, "enforce_seats": False}
    assert data["sync"] == {
        "hold_deactivate_pct": 10.0,
        "hold_update_pct": 75.0,
        "hold_expire_days": 14,
        "nightly_file_name": "roster.csv",
        "nightly_time": "02:00",
        "import_on_upload": True,
        "timezone": "America/New_York",
        "on_row_errors": "reject",
    }
    got = client.get("/v1/districts/springfield-usd", headers=admin_headers).json()
    assert got == data

    patched = client.patch(
        "/v1/districts/springfield-usd",
        json={
            "name": "Springfield Unified",
            "licenses": {"innerorbit": None},
            "sync": {"timezone": "America/Chicago"},
        },
        headers=admin_headers,
    )
    assert patched.status_code == 200, patched.text
    out = patched.json()
    assert out["name"] == "Springfield Unified"
    assert set(out["licenses"]) == {"rocketlit"}
    assert out["sync"]["timezone"] == "America/Chicago"
    assert out["sync"]["hold_update_pct"] == 75.0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"id": "Bad Slug!", "name": "x"}, "id"),
        ({"id": "ok", "name": ""}, "name"),
        ({"id": "ok", "name": "x", "clever_district_id": "12345"}, "clever_district_id"),
        ({"id": "ok", "name": "x", "clever_district_id": "5ADF3107D395A8000199343Z"}, "clever_district_id"),
        ({"id": "ok", "name": "x", "licenses": {"rocketlit": {"seats": -1}}}, "licenses.rocketlit.seats"),
        ({"id": "ok", "name": "x", "licenses": {"mathblaster": {"seats": 1}}}, "licenses.mathblaster"),
        ({"id": "ok", "name": "x", "sync": {"timezone": "Mars/Olympus"}}, "sync.timezone"),
        ({"id": "ok", "name": "x", "sync": {"hold_deactivate_pct": 101}}, "sync.hold_deactivate_pct"),
        ({"id": "ok", "name": "x", "sync": {"nightly_file_name": "../etc/passwd"}}, "sync.nightly_file_name"),
        ({"id": "ok", "name": "x", "sync": {"nightly_file_name": "roster.exe"}}, "sync.nightly_file_name"),
        ({"id": "ok", "name": "x", "sync": {"nightly_time": "25:00"}}, "sync.nightly_time"),
        ({"id": "ok", "name": "x", "surprise": 1}, "surprise"),
    ],
)
def test_bad_district_input_names_the_field(
    client: TestClient, admin_headers: dict[str, str], body: dict[str, Any], field: str
) -> None:
    response = client.post("/v1/districts", json=body, headers=admin_headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    fields = [d["field"] for d in error["details"]]
    assert any(f.startswith(field) for f in fields), fields


def test_the_nightly_file_may_be_a_package(client: TestClient, admin_headers: dict[str, str]) -> None:
    body = {"id": "pkg", "name": "Pkg", "sync": {"nightly_file_name": "clever.zip"}}
    created = client.post("/v1/districts", json=body, headers=admin_headers)
    assert created.status_code == 201, created.text
    assert created.json()["sync"]["nightly_file_name"] == "clever.zip"


def test_malformed_json_is_an_envelope(client: TestClient, admin_headers: dict[str, str]) -> None:
    response = client.post(
        "/v1/districts", content=b"{not json", headers={**admin_headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"


def test_duplicate_slug_and_clever_district_conflict(
    client: TestClient, admin_headers: dict[str, str], create_district: Callable[..., Any]
) -> None:
    create_district("d1", clever_district_id=CLEVER)
    again = client.post("/v1/districts", json={"id": "d1", "name": "x"}, headers=admin_headers)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "DISTRICT_EXISTS"
    assert again.json()["error"]["details"][0]["field"] == "id"
    taken = client.post(
        "/v1/districts", json={"id": "d2", "name": "x", "clever_district_id": CLEVER}, headers=admin_headers
    )
    assert taken.status_code == 409
    assert taken.json()["error"]["code"] == "CLEVER_DISTRICT_TAKEN"


def test_missing_district_is_404(client: TestClient, admin_headers: dict[str, str]) -> None:
    response = client.get("/v1/districts/nowhere", headers=admin_headers)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "DISTRICT_NOT_FOUND"
    response = client.patch("/v1/districts/nowhere", json={"name": "x"}, headers=admin_headers)
    assert response.status_code == 404


def test_read_key_cannot_write_and_bound_admin_cannot_create(
    client: TestClient, make_key: Callable[..., str], create_district: Callable[..., Any]
) -> None:
    create_district("d1")
    reader = {"Authorization": f"Bearer {make_key('roster:read')}"}
    assert client.patch("/v1/districts/d1", json={"name": "x"}, headers=reader).status_code == 403
    bound_admin = {"Authorization": f"Bearer {make_key('admin', district='d1')}"}
    response = client.post("/v1/districts", json={"id": "d9", "name": "x"}, headers=bound_admin)
    assert response.status_code == 403


def test_pagination_bounds(client: TestClient, admin_headers: dict[str, str]) -> None:
    for bad in ("limit=0", "limit=501", "offset=-1", "limit=abc"):
        response = client.get(f"/v1/districts?{bad}", headers=admin_headers)
        assert response.status_code == 422, bad
        assert response.json()["error"]["code"] == "VALIDATION_ERROR"
