"""Support only: API keys for internal tools on /console/keys: listed, created (the secret shown on the
answer page once), revoked, each audited with the support person; refused by the field when not valid;
403 to a district admin; CSRF checked."""

from __future__ import annotations

import re

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from roster_api.models import ApiKey, AuditEvent

from .helpers import csrf_of

KEYS = "/console/keys"
RAW_RE = re.compile(r'id="new-api-key">(rk_[^<]+)<')


def _keys(engine: sa.Engine) -> list[ApiKey]:
    with Session(engine) as session:
        return list(session.exec(select(ApiKey).order_by(col(ApiKey.created_at))).all())


def _audits(engine: sa.Engine, action: str) -> list[AuditEvent]:
    with Session(engine) as session:
        return list(session.exec(select(AuditEvent).where(AuditEvent.action == action)).all())


def test_support_lists_creates_and_revokes_a_key(as_support: TestClient, roster_engine: sa.Engine) -> None:
    page = as_support.get(KEYS)
    assert page.status_code == 200
    assert "alice-support" in page.text
    assert "all districts" in page.text
    assert 'href="/console/keys" aria-current="page"' in page.text
    for scope in ("admin", "roster:read", "roster:write", "resolve"):
        assert f'name="scopes" value="{scope}"' in page.text

    response = as_support.post(
        KEYS,
        data={"csrf_token": csrf_of(page.text), "name": "nightly-script", "scopes": ["roster:read"]},
    )
    assert response.status_code == 200  # the answer itself, never a redirect carrying the secret
    match = RAW_RE.search(response.text)
    assert match, response.text
    raw = match.group(1)
    assert "shown only this once" in response.text
    key = next(k for k in _keys(roster_engine) if k.name == "nightly-script")
    assert key.scopes == ["roster:read"]
    assert key.district_id is None
    assert raw not in key.key_hash
    # shown once: the list shows the key, never its secret
    listed = as_support.get(KEYS)
    assert "nightly-script" in listed.text
    assert key.id in listed.text
    assert raw not in listed.text
    [created] = _audits(roster_engine, "api_key.create")
    assert created.actor == "alice-support"
    assert created.target == key.id
    assert raw not in str(created.details)

    api = {"Authorization": f"Bearer {raw}"}
    districts = as_support.get("/v1/districts", headers=api)
    assert districts.status_code == 200
    assert {d["id"] for d in districts.json()["items"]} == {"d1", "d2"}

    response = as_support.post(f"{KEYS}/{key.id}/revoke", data={"csrf_token": csrf_of(listed.text)})
    assert response.status_code == 303
    assert response.headers["location"].startswith(KEYS + "?notice=")
    assert as_support.get("/v1/districts", headers=api).status_code == 401
    [revoked] = _audits(roster_engine, "api_key.revoke")
    assert revoked.actor == "alice-support"
    assert revoked.target == key.id
    listed = as_support.get(KEYS)
    assert f'action="/console/keys/{key.id}/revoke"' not in listed.text
    # again: nothing more to do, nothing more audited
    again = as_support.post(f"{KEYS}/{key.id}/revoke", data={"csrf_token": csrf_of(listed.text)})
    assert again.status_code == 303
    assert len(_audits(roster_engine, "api_key.revoke")) == 1
    missing = as_support.post(f"{KEYS}/key_nope/revoke", data={"csrf_token": csrf_of(listed.text)})
    assert missing.status_code == 404


def test_a_key_bound_to_a_district_sees_only_it(as_support: TestClient, roster_engine: sa.Engine) -> None:
    token = csrf_of(as_support.get(KEYS).text)
    response = as_support.post(
        KEYS,
        data={
            "csrf_token": token,
            "name": "d1-tool",
            "scopes": ["roster:read", "resolve"],
            "district_id": "d1",
        },
    )
    assert response.status_code == 200
    match = RAW_RE.search(response.text)
    assert match
    key = next(k for k in _keys(roster_engine) if k.name == "d1-tool")
    assert key.district_id == "d1"
    assert key.scopes == ["resolve", "roster:read"]
    items = as_support.get("/v1/districts", headers={"Authorization": f"Bearer {match.group(1)}"}).json()
    assert [d["id"] for d in items["items"]] == ["d1"]
    assert _audits(roster_engine, "api_key.create")[0].district_id == "d1"


def test_invalid_forms_are_refused_by_the_field_and_create_nothing(
    as_support: TestClient, roster_engine: sa.Engine
) -> None:
    token = csrf_of(as_support.get(KEYS).text)
    before = len(_keys(roster_engine))
    cases: list[tuple[dict[str, str | list[str]], str]] = [
        ({"name": "  ", "scopes": ["resolve"]}, "name"),
        ({"name": "gateway"}, "scopes"),
        ({"name": "gateway", "scopes": ["superuser"]}, "scopes"),
        ({"name": "gateway", "scopes": ["resolve"], "district_id": "nope"}, "district_id"),
    ]
    for data, field in cases:
        response = as_support.post(KEYS, data={"csrf_token": token, **data})
        assert response.status_code == 422, data
        assert f'id="{field}-error"' in response.text, data
        assert "Not created" in response.text
        assert not RAW_RE.search(response.text)
    assert 'value="gateway"' in response.text  # what was typed stays
    assert len(_keys(roster_engine)) == before
    assert _audits(roster_engine, "api_key.create") == []


def test_csrf_is_checked(as_support: TestClient, roster_engine: sa.Engine) -> None:
    before = _keys(roster_engine)
    support_key = before[-1]
    for extra in ({}, {"csrf_token": "forged"}):
        create = as_support.post(KEYS, data={"name": "x", "scopes": ["resolve"], **extra})
        assert create.status_code == 403
        revoke = as_support.post(f"{KEYS}/{support_key.id}/revoke", data=extra)
        assert revoke.status_code == 403
    after = _keys(roster_engine)
    assert len(after) == len(before)
    assert all(k.revoked_at is None for k in after)


def test_a_district_admin_cannot_see_or_use_the_key_pages(
    as_d1_admin: TestClient, roster_engine: sa.Engine
) -> None:
    page = as_d1_admin.get("/console/d/d1/settings")
    assert 'href="/console/keys"' not in page.text
    token = csrf_of(page.text)
    assert as_d1_admin.get(KEYS).status_code == 403
    before = _keys(roster_engine)
    create = as_d1_admin.post(KEYS, data={"csrf_token": token, "name": "x", "scopes": ["admin"]})
    assert create.status_code == 403
    revoke = as_d1_admin.post(f"{KEYS}/{before[0].id}/revoke", data={"csrf_token": token})
    assert revoke.status_code == 403
    after = _keys(roster_engine)
    assert len(after) == len(before)
    assert all(k.revoked_at is None for k in after)
