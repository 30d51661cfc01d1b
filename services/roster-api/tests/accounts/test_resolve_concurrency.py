"""Many logins at once (on PostgreSQL they are batched into shared statements): every answer is the one
the rules give for that request alone, every attempt is recorded once, and two first logins racing for
the same email-only person bind it once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from asgi_lifespan import LifespanManager
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from roster_api import deps
from roster_api.accounts.flow import Caller, DatabaseUnavailable, resolve
from roster_api.accounts.pg import PgStore
from roster_api.auth import authenticate
from roster_api.main import create_app
from roster_api.models import AuditEvent, LoginAttempt, Person
from roster_shared.contracts import ResolveRequest

D1 = "d1" * 12
D2 = "d2" * 12


def cid(n: int) -> str:
    return f"{n:024x}"


async def test_concurrent_logins_get_their_own_answers(
    roster_settings: Any, roster: Any, make_key: Callable[..., str], roster_engine: sa.Engine
) -> None:
    roster.district("d1", clever_district_id=D1)
    roster.district("d2", clever_district_id=D2, licenses={"innerorbit": 10})
    students = {n: roster.person("d1", "student", clever_id=cid(n)) for n in range(1, 21)}
    roster.person("d1", "student", clever_id=cid(99), active=False)
    shared = roster.person("d1", "student", email="race@d1.org")
    other = roster.person("d1", "student", email="race2@d1.org")
    headers = {"Authorization": f"Bearer {make_key('resolve', name='sso-gateway')}"}

    def body(user: int, **fields: Any) -> dict[str, Any]:
        return {
            "product": "rocketlit",
            "clever_user_id": cid(user),
            "clever_district_id": D1,
            "email": None,
            "clever_role": "student",
            **fields,
        }

    cases: list[tuple[dict[str, Any], int, str]] = []
    for n in range(1, 21):
        cases.append((body(n), 200, students[n].accounts["rocketlit"]))
        cases.append((body(n, clever_role="teacher"), 422, "ROLE_MISMATCH"))
    cases += [
        (body(99), 422, "INACTIVE_ACCOUNT"),
        (body(77), 422, "NO_ACCOUNT"),
        (body(1, clever_district_id=D2), 422, "PRODUCT_NOT_LICENSED"),
        (body(1, clever_district_id="ee" * 12), 422, "DISTRICT_NOT_LINKED"),
        # the same Clever user's first login, twice at once: both succeed, one binding
        (body(50, email="race@d1.org"), 200, shared.accounts["rocketlit"]),
        (body(50, email="race@d1.org"), 200, shared.accounts["rocketlit"]),
    ]
    app = create_app(roster_settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://roster-api") as client:
            responses = await asyncio.gather(
                *[client.post("/v1/resolve", json=b, headers=headers) for b, _, _ in cases]
            )
            # two different Clever users claiming one email-only person at once: exactly one wins
            claims = await asyncio.gather(
                client.post("/v1/resolve", json=body(60, email="race2@d1.org"), headers=headers),
                client.post("/v1/resolve", json=body(61, email="race2@d1.org"), headers=headers),
            )
    for response, (_, status, expected) in zip(responses, cases, strict=True):
        assert response.status_code == status, response.text
        if status == 200:
            assert response.json()["account_id"] == expected
        else:
            assert response.json()["error"]["code"] == expected
    assert sorted(r.status_code for r in claims) == [200, 422]
    loser = next(r for r in claims if r.status_code == 422)
    assert loser.json()["error"]["code"] == "CLEVER_ID_CONFLICT"

    references = [
        r.json().get("reference") or r.json()["error"]["details"][0]["reference"] for r in responses
    ]
    references += [r.json().get("reference") or r.json()["error"]["details"][0]["reference"] for r in claims]
    assert len(set(references)) == len(references)
    with Session(roster_engine) as session:
        rows = session.exec(select(LoginAttempt)).all()
        assert sorted(r.reference for r in rows) == sorted(references)
        bound = session.exec(select(AuditEvent).where(AuditEvent.action == "person.clever_id_bound")).all()
        bound_ids = sorted(e.target for e in bound if e.target is not None)
        assert bound_ids == sorted([shared.person_id, other.person_id])
        winner = session.exec(select(Person).where(Person.id == other.person_id)).one()
    assert winner.clever_id in {cid(60), cid(61)}


async def test_an_unreachable_database_is_a_503_not_a_hang(pg_url: str) -> None:
    closed = pg_url.rsplit("@", 1)[0] + "@127.0.0.1:1/nowhere"
    store = PgStore(closed, min_size=1, max_size=2, timeout=0.5)
    await store.open()
    request = ResolveRequest.model_validate(
        {"product": "rocketlit", "clever_user_id": cid(1), "clever_district_id": D1, "clever_role": "student"}
    )
    started = time.monotonic()
    try:
        with pytest.raises(DatabaseUnavailable) as info:
            await resolve(store=store, request=request, caller=Caller("gw", None), pepper="p")
    finally:
        await store.close()
    assert info.value.status_code == 503
    assert time.monotonic() - started < 5


def test_resolve_with_the_database_gone_answers_503(
    roster_settings: Any, make_key: Callable[..., str]
) -> None:
    key = make_key("resolve")
    app = create_app(roster_settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        app.state.engine.dispose()
        # the key is not cached yet and the database is unreachable from now on
        app.state.engine = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
        response = client.post(
            "/v1/resolve",
            json={
                "product": "rocketlit",
                "clever_user_id": cid(1),
                "clever_district_id": D1,
                "clever_role": "student",
            },
            headers={"Authorization": f"Bearer {key}"},
        )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "SERVICE_UNAVAILABLE"


async def test_concurrent_calls_with_an_uncached_key_check_it_once(
    roster_settings: Any, roster: Any, make_key: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    roster.district("d1", clever_district_id=D1)
    roster.person("d1", "student", clever_id=cid(1))
    headers = {"Authorization": f"Bearer {make_key('resolve')}"}
    checks = 0
    original = authenticate

    def counting(**kwargs: Any) -> Any:
        nonlocal checks
        checks += 1
        time.sleep(0.05)  # a slow database makes the overlap certain
        return original(**kwargs)

    monkeypatch.setattr(deps, "authenticate", counting)
    app = create_app(roster_settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://roster-api") as client:
            body = {
                "product": "rocketlit",
                "clever_user_id": cid(1),
                "clever_district_id": D1,
                "clever_role": "student",
            }
            responses = await asyncio.gather(
                *[client.post("/v1/resolve", json=body, headers=headers) for _ in range(20)]
            )
            bad = await asyncio.gather(
                *[
                    client.post("/v1/resolve", json=body, headers={"Authorization": "Bearer rk_nope"})
                    for _ in range(5)
                ]
            )
    assert [r.status_code for r in responses] == [200] * 20
    assert [r.status_code for r in bad] == [401] * 5
    assert checks == 2  # one for the good key, one for the bad one
