"""Support's "why can't this student log in": attempts by reference and by district, and the audit log."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from roster_api.models import LoginAttempt, Person

D1 = "d1" * 12
D2 = "d2" * 12
UNLINKED = "ee" * 12


def cid(n: int) -> str:
    return f"{n:024x}"


@pytest.fixture
def setup(client: TestClient, roster: Any, make_key: Callable[..., str]) -> dict[str, Any]:
    roster.district("d1", clever_district_id=D1)
    roster.district("d2", clever_district_id=D2)
    gone = roster.person("d1", "student", clever_id=cid(1), active=False, first="Gina", last="Gone")
    roster.person("d1", "student", email="twin@d1.org")
    roster.person("d1", "student", email="twin@d1.org")
    gateway = {"Authorization": f"Bearer {make_key('resolve', name='sso-gateway')}"}

    def resolve(**fields: Any) -> Any:
        body = {
            "product": "rocketlit",
            "clever_user_id": cid(1),
            "clever_district_id": D1,
            "clever_role": "student",
        }
        return client.post("/v1/resolve", json={**body, **fields}, headers=gateway)

    refs = {
        "inactive": resolve(email="Gina@D1.org").json()["error"]["details"][0]["reference"],
        "ambiguous": resolve(clever_user_id=cid(2), email=" TWIN@d1.org").json()["error"]["details"][0][
            "reference"
        ],
        "unlinked": resolve(clever_district_id=UNLINKED).json()["error"]["details"][0]["reference"],
    }
    return {
        "refs": refs,
        "gone": gone,
        "read": {"Authorization": f"Bearer {make_key('roster:read', name='support')}"},
        "resolve": resolve,
    }


def test_an_attempt_by_reference_says_which_rule_failed_and_what_the_roster_holds(
    client: TestClient, setup: dict[str, Any], roster_engine: sa.Engine
) -> None:
    ref = setup["refs"]["inactive"]
    # support types it as read over the phone: lower case, no dashes
    response = client.get(f"/v1/login-attempts/{ref.lower().replace('-', '')}", headers=setup["read"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["reference"] == ref
    assert (body["outcome"], body["reason"], body["rule"]) == ("failure", "inactive_account", "active")
    assert "The roster has this Clever ID as an inactive student" in body["diagnosis"]
    assert body["roster"]["clever_id_match"]["person_id"] == setup["gone"].person_id
    assert body["roster"]["clever_id_match"]["active"] is False
    assert body["roster_now"]["clever_id_match"]["active"] is False
    assert body["email_sent"] is True
    assert body["caller"] == "sso-gateway"
    assert "email_digest" not in body

    # the student comes back in the roster: today's view shows it, the record keeps the past
    with Session(roster_engine) as s:
        person = s.exec(select(Person).where(Person.id == setup["gone"].person_id)).one()
        person.active = True
        s.add(person)
        s.commit()
    later = client.get(f"/v1/login-attempts/{ref}", headers=setup["read"]).json()
    assert later["roster_now"]["clever_id_match"]["active"] is True
    assert later["roster"]["clever_id_match"]["active"] is False

    ambiguous = client.get(f"/v1/login-attempts/{setup['refs']['ambiguous']}", headers=setup["read"]).json()
    assert "2 people share this email" in ambiguous["diagnosis"]
    assert len(ambiguous["roster"]["email_matches"]) == 2


def test_the_email_is_never_stored_in_clear(
    client: TestClient, setup: dict[str, Any], roster_engine: sa.Engine
) -> None:
    with Session(roster_engine) as s:
        rows = s.exec(select(LoginAttempt)).all()
    assert len(rows) == 3
    for row in rows:
        dumped = repr(row.model_dump()).lower()
        assert "gina@d1.org" not in dumped
        assert "twin@d1.org" not in dumped


def test_list_attempts_of_a_district_with_filters(client: TestClient, setup: dict[str, Any]) -> None:
    setup["resolve"](clever_user_id=cid(9))
    url = "/v1/districts/d1/login-attempts"
    everything = client.get(url, headers=setup["read"]).json()
    assert everything["total"] == 3  # the unlinked attempt belongs to no district
    times = [a["created_at"] for a in everything["items"]]
    assert times == sorted(times, reverse=True)

    def refs(**params: Any) -> list[str]:
        response = client.get(url, params=params, headers=setup["read"])
        assert response.status_code == 200, response.text
        return [a["reference"] for a in response.json()["items"]]

    assert refs(reason="ambiguous_email") == [setup["refs"]["ambiguous"]]
    assert refs(clever_user_id=cid(1).upper()) == [setup["refs"]["inactive"]]
    assert refs(email="  gina@d1.ORG") == [setup["refs"]["inactive"]]
    assert refs(outcome="success") == []
    assert len(refs(outcome="failure")) == 3
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert refs(since=future) == []
    assert len(refs(until=future)) == 3
    assert len(refs(since="2020-01-01T00:00:00")) == 3


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"outcome": "maybe"}, "outcome"),
        ({"reason": "because"}, "reason"),
        ({"since": "yesterday"}, "since"),
        ({"clever_user_id": "123"}, "clever_user_id"),
        ({"email": " "}, "email"),
        ({"limit": 501}, "limit"),
    ],
)
def test_bad_filters_get_the_envelope(
    client: TestClient, setup: dict[str, Any], params: dict[str, Any], field: str
) -> None:
    response = client.get("/v1/districts/d1/login-attempts", params=params, headers=setup["read"])
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert field in {d["field"] for d in response.json()["error"]["details"]}


def test_attempts_are_isolated_by_district(
    client: TestClient, setup: dict[str, Any], make_key: Callable[..., str]
) -> None:
    d2 = {"Authorization": f"Bearer {make_key('roster:read', district='d2')}"}
    d1 = {"Authorization": f"Bearer {make_key('roster:read', district='d1')}"}
    for ref in setup["refs"].values():
        response = client.get(f"/v1/login-attempts/{ref}", headers=d2)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "LOGIN_ATTEMPT_NOT_FOUND"
    assert client.get(f"/v1/login-attempts/{setup['refs']['inactive']}", headers=d1).status_code == 200
    # an attempt from an unlinked Clever district is for unbound (internal) keys only
    assert client.get(f"/v1/login-attempts/{setup['refs']['unlinked']}", headers=d1).status_code == 404
    unlinked = client.get(f"/v1/login-attempts/{setup['refs']['unlinked']}", headers=setup["read"]).json()
    assert unlinked["district_id"] is None
    assert unlinked["reason"] == "district_not_linked"
    assert unlinked["roster_now"] is None
    assert client.get("/v1/districts/d1/login-attempts", headers=d2).status_code == 404
    missing = client.get("/v1/login-attempts/LA-ZZZZZ-ZZZZZ", headers=setup["read"])
    assert missing.status_code == 404


def test_audit_log(
    client: TestClient, admin_headers: dict[str, str], make_key: Callable[..., str], roster: Any
) -> None:
    client.post(
        "/v1/districts", json={"id": "d1", "name": "One", "clever_district_id": D1}, headers=admin_headers
    )
    client.post("/v1/districts", json={"id": "d2", "name": "Two"}, headers=admin_headers)
    client.patch("/v1/districts/d1", json={"name": "One!"}, headers=admin_headers)
    roster.person("d1", "student", email="a@d1.org")
    gateway = {"Authorization": f"Bearer {make_key('resolve', name='sso-gateway')}"}
    body = {
        "product": "rocketlit",
        "clever_user_id": cid(5),
        "clever_district_id": D1,
        "clever_role": "student",
        "email": "a@d1.org",
    }
    # no license: nothing is bound, so no audit event
    assert client.post("/v1/resolve", json=body, headers=gateway).status_code == 422

    page = client.get("/v1/audit", headers=admin_headers).json()
    assert [e["action"] for e in page["items"]] == ["district.update", "district.create", "district.create"]
    assert page["items"][0]["actor"] == "support-admin"
    assert page["items"][0]["district_id"] == "d1"
    assert (
        client.get("/v1/audit", params={"action": "district.create"}, headers=admin_headers).json()["total"]
        == 2
    )
    assert client.get("/v1/audit", params={"actor": "nobody"}, headers=admin_headers).json()["total"] == 0

    bound = {"Authorization": f"Bearer {make_key('admin', district='d2')}"}
    mine = client.get("/v1/audit", headers=bound).json()
    assert [(e["action"], e["district_id"]) for e in mine["items"]] == [("district.create", "d2")]
    assert client.get("/v1/audit", params={"district_id": "d1"}, headers=bound).status_code == 404
    reader = {"Authorization": f"Bearer {make_key('roster:read', 'roster:write', 'resolve')}"}
    assert client.get("/v1/audit", headers=reader).status_code == 403
    bad = client.get("/v1/audit", params={"since": "noon"}, headers=admin_headers)
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "VALIDATION_ERROR"
