"""The demo frontend's own behaviour; the full login through the gateway is tests/test_browser_demo.py."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from demo_frontend.app import create_app
from demo_frontend.settings import Settings


def _settings(**extra: object) -> Settings:
    values: dict[str, object] = {
        "product": "innerorbit",
        "client_id": "innerorbit-demo",
        "client_secret": "s3cret-for-tests",
        "issuer": "http://127.0.0.1:9",  # nothing listens: the gateway is down
        "base_url": "http://testserver",
    }
    values.update(extra)
    return Settings.model_validate(values)


@pytest.fixture
def client() -> TestClient:
    return TestClient(create_app(_settings()))


def test_demo_frontend_home_offers_clever_login_in_the_products_name(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert "Welcome to InnerOrbit" in response.text
    assert "href='/login'" in response.text
    assert response.headers["cache-control"] == "no-store"


def test_demo_frontend_refuses_a_login_started_by_another_issuer(client: TestClient) -> None:
    response = client.get("/login", params={"iss": "https://evil.example"}, follow_redirects=False)
    assert response.status_code == 400
    assert "unknown identity provider" in response.text
    assert "evil.example" not in response.text


def test_demo_frontend_gateway_down_is_a_friendly_page(client: TestClient) -> None:
    response = client.get("/login", follow_redirects=False)
    assert response.status_code == 502
    assert "not reachable right now" in response.text


def test_demo_frontend_callback_errors_are_not_echoed(client: TestClient) -> None:
    response = client.get("/auth/callback", params={"error": "<script>x</script>", "state": "s"})
    assert response.status_code == 400
    assert "<script>" not in response.text
    assert "cancelled or refused" in response.text
    # a callback with no login in progress (no state in the session) fails cleanly, never a 500
    response = client.get("/auth/callback", params={"code": "abc", "state": "forged"})
    assert response.status_code == 400
    assert "could not be completed" in response.text


def test_demo_frontend_needs_its_client_secret() -> None:
    with pytest.raises(ValidationError, match="DEMO_CLIENT_SECRET"):
        _settings(client_secret="")


def test_demo_frontend_cookie_name_is_per_product() -> None:
    # both frontends run on 127.0.0.1, where browsers share cookies across ports
    assert _settings().cookie_name != _settings(product="rocketlit").cookie_name
