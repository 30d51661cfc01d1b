"""Fixtures of every roster-api test: the app, a client, an admin key, a district, and `roster`, which
writes roster rows straight into the tables (roster_builder.py). The databases come from the repository's
conftest.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from roster_api.main import create_app
from roster_api.settings import Settings

from .roster_builder import RosterBuilder


@pytest.fixture
def app(roster_settings: Settings) -> Any:
    return create_app(roster_settings)


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def admin_headers(make_key: Callable[..., str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key('admin', name='support-admin')}"}


@pytest.fixture
def create_district(client: TestClient, admin_headers: dict[str, str]) -> Callable[..., dict[str, Any]]:
    def create(district_id: str = "springfield-usd", **extra: Any) -> dict[str, Any]:
        body = {"id": district_id, "name": "Springfield USD", **extra}
        response = client.post("/v1/districts", json=body, headers=admin_headers)
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()
        return data

    return create


@pytest.fixture
def roster(roster_engine: sa.Engine) -> RosterBuilder:
    return RosterBuilder(roster_engine)
