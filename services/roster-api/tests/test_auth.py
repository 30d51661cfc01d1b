"""API keys: hashing, scopes, district binding, on every route (driven from the app's route list)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from roster_api.auth import TOUCH_SECONDS, KeyCache, Principal, Scope, authenticate, hash_key
from roster_api.console.web import ConsoleRoute
from roster_api.deps import Require
from roster_api.models import ApiKey

# the console's pages sign in with a session cookie, not a key: test_every_console_route_* below
CONSOLE = "/console/"
# "Log in with Clever" (start and the gateway's callback) runs before there is a session
CONSOLE_PUBLIC = {
    "/console/login",
    "/console/static/{name}",
    "/console/login/clever",
    "/console/auth/callback",
}
PUBLIC = {
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/docs-assets/{name}",
}


def _required_scopes(route: APIRoute) -> set[Scope]:
    found: set[Scope] = set()
    stack = [route.dependant]
    while stack:
        dep = stack.pop()
        if isinstance(dep.call, Require):
            found.add(dep.call.scope)
        stack.extend(dep.dependencies)
    return found


def protected_routes(app: FastAPI) -> list[tuple[str, str, Scope]]:
    """Every HTTP route of the app (included routers too) with the scope it requires."""
    routes = []
    for ctx in iter_route_contexts(app.routes):
        route = ctx.original_route
        path = ctx.path
        if path is None or path in PUBLIC or not ctx.methods or path.startswith(CONSOLE):
            continue
        assert isinstance(route, APIRoute), f"{path} is not an APIRoute"
        scopes = _required_scopes(route)
        assert scopes, f"{path} has no API-key dependency"
        # the strongest requirement decides
        scope = Scope.ADMIN if Scope.ADMIN in scopes else sorted(scopes)[0]
        for method in ctx.methods - {"HEAD"}:
            routes.append((method, path, scope))
    return routes


def _fill(path: str, district_id: str) -> str:
    path = path.replace("{district_id}", district_id)
    return re.sub(r"\{[^}]+\}", "x-does-not-exist", path)


def test_every_route_needs_a_key_with_its_scope(
    app: FastAPI, client: TestClient, make_key: Callable[..., str], create_district: Callable[..., Any]
) -> None:
    create_district("d1")
    routes = protected_routes(app)
    assert routes, "no routes found"
    for method, path, scope in routes:
        url = _fill(path, "d1")
        response = client.request(method, url)
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["error"]["code"] == "UNAUTHENTICATED"
        response = client.request(method, url, headers={"Authorization": "Bearer rk_not-a-real-key"})
        assert response.status_code == 401, (method, path)
        others = [s for s in Scope if s is not scope and s is not Scope.ADMIN]
        wrong = make_key(*[s.value for s in others]) if others else None
        if wrong is not None and scope is not Scope.ADMIN:
            response = client.request(method, url, headers={"Authorization": f"Bearer {wrong}"})
            assert response.status_code == 403, (method, path, response.text)
            assert response.json()["error"]["code"] == "FORBIDDEN"


def test_district_bound_key_sees_only_its_district_everywhere(
    app: FastAPI, client: TestClient, make_key: Callable[..., str], create_district: Callable[..., Any]
) -> None:
    create_district("d1")
    create_district("d2")
    key = make_key(*[s.value for s in Scope], district="d1")
    headers = {"Authorization": f"Bearer {key}"}
    for method, path, _ in protected_routes(app):
        if "{district_id}" not in path:
            continue
        response = client.request(method, _fill(path, "d2"), headers=headers)
        assert response.status_code == 404, (method, path, response.text)
        assert "d2" in response.json()["error"]["message"] or response.json()["error"]["code"].endswith(
            "NOT_FOUND"
        )
    listed = client.get("/v1/districts", headers=headers).json()
    assert [d["id"] for d in listed["items"]] == ["d1"]
    assert listed["total"] == 1


def test_keys_are_stored_hashed_and_long(make_key: Callable[..., str], roster_engine: sa.Engine) -> None:
    raw = make_key("roster:read")
    assert raw.startswith("rk_")
    assert len(raw) >= 3 + 43
    with Session(roster_engine) as session:
        stored = session.exec(select(ApiKey)).one()
    assert stored.key_hash == hash_key(raw)
    assert raw not in stored.key_hash


def test_revoked_key_is_refused(
    client: TestClient, make_key: Callable[..., str], roster_engine: sa.Engine
) -> None:
    raw = make_key("roster:read")
    from roster_api.models import utcnow

    with Session(roster_engine) as session:
        key = session.exec(select(ApiKey)).one()
        key.revoked_at = utcnow()
        session.add(key)
        session.commit()
    response = client.get("/v1/districts", headers={"Authorization": f"Bearer {raw}"})
    assert response.status_code == 401


def test_authenticate_reads_the_key_and_touches_last_used_at_at_most_once_a_minute(
    make_key: Callable[..., str], roster_engine: sa.Engine
) -> None:
    raw = make_key("resolve", name="gateway")

    def stored() -> ApiKey:
        with Session(roster_engine) as session:
            return session.exec(select(ApiKey)).one()

    principal = authenticate(engine=roster_engine, cache=KeyCache(), raw_key=raw)
    assert principal == Principal(stored().id, "gateway", frozenset({"resolve"}), None)
    first_use = stored().last_used_at
    assert first_use is not None
    authenticate(engine=roster_engine, cache=KeyCache(), raw_key=raw)
    assert stored().last_used_at == first_use  # within TOUCH_SECONDS: no write
    with Session(roster_engine) as session:
        key = session.exec(select(ApiKey)).one()
        key.last_used_at = first_use - timedelta(seconds=TOUCH_SECONDS + 1)
        session.add(key)
        session.commit()
    authenticate(engine=roster_engine, cache=KeyCache(), raw_key=raw)
    touched = stored().last_used_at
    assert touched is not None
    assert touched >= first_use  # written again: it was set 61 s back
    assert authenticate(engine=roster_engine, cache=KeyCache(), raw_key=raw + "x") is None


def test_admin_implies_read(client: TestClient, admin_headers: dict[str, str]) -> None:
    assert client.get("/v1/districts", headers=admin_headers).status_code == 200


@pytest.mark.parametrize("header", ["rk_abc", "Basic abc", "Bearer ", "Bearer"])
def test_malformed_authorization_headers(client: TestClient, header: str) -> None:
    response = client.get("/v1/districts", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def console_routes(app: FastAPI) -> list[tuple[str, str]]:
    routes: list[tuple[str, str]] = []
    for ctx in iter_route_contexts(app.routes):
        path = ctx.path
        if path is None or not path.startswith(CONSOLE) or path in CONSOLE_PUBLIC or not ctx.methods:
            continue
        assert isinstance(ctx.original_route, ConsoleRoute), f"{path} is not a ConsoleRoute"
        routes.extend((method, path) for method in ctx.methods - {"HEAD"})
    return routes


def _console_sign_in(client: TestClient, key: str) -> str:
    """Signs in and returns the session's CSRF token."""
    page = client.get("/console/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    response = client.post(
        "/console/login", data={"csrf_token": token.group(1), "api_key": key}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    settings_page = client.get("/console/d/d1/settings")
    token = re.search(r'name="csrf_token" value="([^"]+)"', settings_page.text)
    assert token
    return token.group(1)


def test_every_console_route_needs_a_session(
    app: FastAPI, client: TestClient, create_district: Callable[..., Any]
) -> None:
    create_district("d1")
    routes = console_routes(app)
    assert len(routes) > 15
    for method, path in routes:
        response = client.request(method, _fill(path, "d1"), follow_redirects=False)
        assert response.status_code == 303, (method, path, response.text)
        assert response.headers["location"] == "/console/login"


def test_every_console_route_hides_other_districts(
    app: FastAPI, client: TestClient, make_key: Callable[..., str], create_district: Callable[..., Any]
) -> None:
    create_district("d1")
    create_district("d2")
    csrf = _console_sign_in(client, make_key("admin", district="d1", name="d1-admin"))
    checked = 0
    for method, path in console_routes(app):
        if "{district_id}" not in path:
            continue
        data = {"csrf_token": csrf} if method == "POST" else None
        response = client.request(method, _fill(path, "d2"), data=data, follow_redirects=False)
        assert response.status_code == 404, (method, path, response.text)
        assert "d2" in response.text
        checked += 1
    assert checked > 15


def test_a_key_check_never_waits_for_sqlites_write_lock(
    make_key: Callable[..., str], roster_engine: sa.Engine, database_url: str
) -> None:
    """An import holds SQLite's only write lock while it applies: the first use of a key (whose
    last_used_at touch is a write) answers at once and leaves the touch to a later request."""
    if not database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL's row locks do not stop the touch behind an import")
    raw = make_key("resolve", name="gateway")
    with roster_engine.connect() as holder:
        holder.exec_driver_sql("BEGIN IMMEDIATE")  # as an applying import does
        started = time.perf_counter()
        principal = authenticate(engine=roster_engine, cache=KeyCache(), raw_key=raw)
        waited = time.perf_counter() - started
        holder.rollback()
    assert principal is not None
    assert principal.name == "gateway"
    assert waited < 0.5
    with Session(roster_engine) as session:
        assert session.exec(select(ApiKey)).one().last_used_at is None  # skipped, not waited for
    authenticate(engine=roster_engine, cache=KeyCache(), raw_key=raw)
    with Session(roster_engine) as session:
        assert session.exec(select(ApiKey)).one().last_used_at is not None  # the lock is free: touched
