"""LeanLane serves a well-formed call of a lean route without route matching and answers every request as
the app does without it (same status, body, headers, access line and metrics); anything else reaches the
router whole."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import fastapi.routing
import pytest
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict
from starlette.responses import Response

from roster_api.errors import Forbidden, Unauthenticated
from roster_api.lean_route import LeanLane, LeanRoute, install_lean_lane
from roster_api.text_input import TextInputGuard
from roster_shared.web import install_observability


class Greeting(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    times: int = 1


async def caller(request: Request) -> str:
    key = request.headers.get("authorization", "")
    if key != "Bearer good":
        raise Unauthenticated("Send an API key as `Authorization: Bearer <key>`.")
    return "tester"


async def greet(body: Greeting, who: Annotated[str, Depends(caller)]) -> Response:
    if body.name == "forbidden":
        raise Forbidden("Not this name.")
    if body.name == "boom":
        raise RuntimeError("an unexpected failure")
    return Response(f'{{"hello": "{body.name * body.times}", "by": "{who}"}}', media_type="application/json")


def _app(*, lane: bool) -> FastAPI:
    """roster-api's middleware stack (text guard inside the request context) around one lean route."""
    app = FastAPI()
    app.add_middleware(TextInputGuard)
    install_observability(app, "test")
    router = APIRouter()
    router.add_api_route("/greet", greet, methods=["POST"], route_class_override=LeanRoute)
    app.include_router(router)
    if lane:
        install_lean_lane(app, [r for r in router.routes if isinstance(r, LeanRoute)])
    return app


GOOD = {"authorization": "Bearer good", "content-type": "application/json"}
CASES: list[tuple[str, str, dict[str, str], bytes]] = [
    ("valid", "", GOOD, b'{"name": "a", "times": 2}'),
    ("valid, charset", "", {**GOOD, "content-type": "application/json; charset=utf-8"}, b'{"name": "a"}'),
    ("valid, query string", "?x=1", GOOD, b'{"name": "a"}'),
    ("no key", "", {"content-type": "application/json"}, b'{"name": "a"}'),
    ("bad key, bad field", "", {"content-type": "application/json"}, b'{"name": 5}'),
    ("the endpoint refuses", "", GOOD, b'{"name": "forbidden"}'),
    ("bad field", "", GOOD, b'{"name": "a", "times": "many"}'),
    ("unknown field", "", GOOD, b'{"name": "a", "extra": 1}'),
    ("malformed JSON", "", GOOD, b'{"name": "a"'),
    ("empty body", "", GOOD, b""),
    ("NUL in a value", "", GOOD, b'{"name": "a\\u0000"}'),
    ("NUL in the query", "?x=%00", GOOD, b'{"name": "a"}'),
    ("form content type", "", {**GOOD, "content-type": "application/x-www-form-urlencoded"}, b"name=a"),
    ("vendor JSON type", "", {**GOOD, "content-type": "application/vnd.x+json"}, b'{"name": "a"}'),
    ("no content type", "", {"authorization": "Bearer good"}, b'{"name": "a"}'),
    ("unexpected error", "", GOOD, b'{"name": "boom"}'),
]


def _answer(app: FastAPI, query: str, headers: dict[str, str], body: bytes) -> tuple[Any, ...]:
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/greet" + query, content=body, headers={**headers, "x-request-id": "req-1"})
    return (
        response.status_code,
        response.json(),
        response.headers.get("www-authenticate"),
        response.headers.get("x-request-id"),
        response.headers.get("content-type"),
    )


@pytest.mark.parametrize(("case", "query", "headers", "body"), CASES, ids=[c[0] for c in CASES])
def test_the_lane_answers_as_the_app_does_without_it(
    case: str, query: str, headers: dict[str, str], body: bytes
) -> None:
    assert _answer(_app(lane=True), query, headers, body) == _answer(_app(lane=False), query, headers, body)


@pytest.fixture
def routed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The requests that went through the router's route matching."""
    calls: list[str] = []
    original = fastapi.routing.APIRouter.app

    async def counting(self: fastapi.routing.APIRouter, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            calls.append(scope["path"])
        await original(self, scope, receive, send)

    monkeypatch.setattr(fastapi.routing.APIRouter, "app", counting)
    return calls


def test_only_a_well_formed_call_skips_routing(routed: list[str]) -> None:
    with TestClient(_app(lane=True)) as client:
        assert client.post("/greet", json={"name": "a"}, headers=GOOD).status_code == 200
        assert client.post("/greet", json={"name": "a"}).status_code == 401  # the dependency raised
        assert routed == []
        assert client.post("/greet", json={"name": 1}, headers=GOOD).status_code == 422
        assert client.post("/greet?x=1", json={"name": "a"}, headers=GOOD).status_code == 200
        assert client.get("/greet").status_code == 405
        assert routed == ["/greet", "/greet", "/greet"]


def test_dependency_overrides_go_through_the_router(routed: list[str]) -> None:
    app = _app(lane=True)

    async def someone_else() -> str:
        return "override"

    app.dependency_overrides[caller] = someone_else
    with TestClient(app) as client:
        assert client.post("/greet", json={"name": "a"}).json() == {"hello": "a", "by": "override"}
    assert routed == ["/greet"]


def test_a_lane_call_is_logged_and_counted_under_its_route(caplog: pytest.LogCaptureFixture) -> None:
    app = _app(lane=True)
    with TestClient(app) as client, caplog.at_level(logging.INFO, logger="http"):
        client.post("/greet", json={"name": "a"}, headers=GOOD)
        client.post("/greet", json={"name": "a"})
        metrics = client.get("/metrics").text
    lines = [getattr(r, "fields", {}) for r in caplog.records if r.getMessage() == "request"]
    assert [(f["route"], f["status"]) for f in lines[:2]] == [("/greet", 200), ("/greet", 401)]
    assert 'http_requests_total{method="POST",route="/greet",status="200"} 1.0' in metrics
    assert 'http_requests_total{method="POST",route="/greet",status="401"} 1.0' in metrics


def test_a_route_included_under_a_prefix_is_refused() -> None:
    app = FastAPI()
    router = APIRouter()
    router.add_api_route("/greet", greet, methods=["POST"], route_class_override=LeanRoute)
    app.include_router(router, prefix="/v2")
    with pytest.raises(ValueError, match="LeanLane"):
        install_lean_lane(app, [r for r in router.routes if isinstance(r, LeanRoute)])


def test_roster_api_serves_resolve_from_the_lane() -> None:
    from roster_api.main import create_app
    from roster_api.settings import Settings

    app = create_app(Settings(hash_pepper="p" * 32))
    lane = app.router.middleware_stack
    assert isinstance(lane, LeanLane)
    assert list(lane.routes) == [("POST", "/v1/resolve")]
