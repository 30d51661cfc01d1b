"""`POST /v1/console/resolve`: which Clever users the gateway may sign in to the district console."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from .helpers import csrf_of

LINKED = "5a1b2c3d4e5f60718293a4b5"
UNLINKED = "5a1b2c3d4e5f60718293a4b6"
ADMIN = "6a1b2c3d4e5f60718293a4b1"


def _ask(client: TestClient, headers: dict[str, str], role: str, district: str = LINKED) -> Any:
    body = {"clever_user_id": ADMIN, "clever_district_id": district, "clever_role": role}
    return client.post("/v1/console/resolve", json=body, headers=headers)


def test_district_admins_of_linked_districts_only(
    as_support: TestClient, make_key: Callable[..., str]
) -> None:
    token = csrf_of(as_support.get("/console/d/d1/settings").text)
    form = {"csrf_token": token, "clever_district_id": LINKED, "seats_rocketlit": "10"}
    assert as_support.post("/console/d/d1/settings/district", data=form).status_code == 303
    gateway = {"Authorization": f"Bearer {make_key('resolve', name='sso-gateway')}"}

    admitted = _ask(as_support, gateway, "district_admin")
    assert admitted.status_code == 200, admitted.text
    identity = admitted.json()
    assert identity["district_id"] == "d1"
    assert identity["actor"] == f"clever:{ADMIN}"
    assert identity["reference"].startswith("LA-")

    for role in ("student", "teacher", "staff"):
        refused = _ask(as_support, gateway, role)
        assert refused.status_code == 422, role
        error = refused.json()["error"]
        assert error["code"] == "ROLE_MISMATCH"
        reference = error["details"][0]["reference"]
        page = as_support.get("/console/d/d1/logins", params={"reference": reference})
        assert "The district console is for district admins" in page.text

    unlinked = _ask(as_support, gateway, "district_admin", district=UNLINKED)
    assert unlinked.status_code == 422
    assert unlinked.json()["error"]["code"] == "DISTRICT_NOT_LINKED"

    # the district lets its staff in
    form["console_staff"] = "on"
    assert as_support.post("/console/d/d1/settings/district", data=form).status_code == 303
    assert _ask(as_support, gateway, "staff").status_code == 200
    assert _ask(as_support, gateway, "student").status_code == 422


def test_needs_the_resolve_scope(as_support: TestClient, make_key: Callable[..., str]) -> None:
    reader = {"Authorization": f"Bearer {make_key('roster:read', name='reader')}"}
    assert _ask(as_support, reader, "district_admin").status_code == 403
    assert _ask(as_support, {}, "district_admin").status_code == 401
    bad = {"Authorization": f"Bearer {make_key('resolve', name='gw')}"}
    assert _ask(as_support, bad, "district_admin", district="not-an-id").status_code == 422
