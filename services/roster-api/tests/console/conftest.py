"""Console fixtures: an app, a browser-like client, signed-in helpers and a roster CSV."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from roster_api.main import create_app
from roster_api.settings import Settings

from .helpers import csrf_of


@pytest.fixture
def console_app(roster_settings: Settings) -> Any:
    return create_app(roster_settings)


@pytest.fixture
def browser(console_app: Any) -> Iterator[TestClient]:
    """A client that keeps cookies and does not follow redirects, like a careful browser."""
    with TestClient(console_app, raise_server_exceptions=False, follow_redirects=False) as c:
        yield c


@pytest.fixture
def districts(browser: TestClient, make_key: Callable[..., str]) -> list[str]:
    headers = {"Authorization": f"Bearer {make_key('admin', name='setup')}"}
    for district_id in ("d1", "d2"):
        body = {
            "id": district_id,
            "name": f"District {district_id}",
            "licenses": {"rocketlit": {"seats": 100}},
        }
        assert browser.post("/v1/districts", json=body, headers=headers).status_code == 201
    return ["d1", "d2"]


def sign_in(client: TestClient, key: str) -> Any:
    page = client.get("/console/login")
    assert page.status_code == 200
    return client.post("/console/login", data={"csrf_token": csrf_of(page.text), "api_key": key})


@pytest.fixture
def as_support(browser: TestClient, make_key: Callable[..., str], districts: list[str]) -> TestClient:
    response = sign_in(browser, make_key("admin", name="alice-support"))
    assert response.status_code == 303, response.text
    return browser


@pytest.fixture
def as_d1_admin(browser: TestClient, make_key: Callable[..., str], districts: list[str]) -> TestClient:
    response = sign_in(browser, make_key("admin", district="d1", name="d1-admin"))
    assert response.status_code == 303, response.text
    return browser


@pytest.fixture
def page_csrf(browser: TestClient) -> Callable[[str], str]:
    def get(path: str) -> str:
        response = browser.get(path)
        assert response.status_code == 200, response.text
        return csrf_of(response.text)

    return get
