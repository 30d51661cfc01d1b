"""LeanRoute answers every request as FastAPI's own handler does, and takes the lean path (no dependency
solving) only for a well-formed one."""

from __future__ import annotations

from typing import Annotated, Any

import fastapi.dependencies.utils
import fastapi.routing
import pytest
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict
from starlette.responses import Response

from roster_api.errors import Unauthenticated
from roster_api.lean_route import LeanRoute
from roster_shared.web import install_error_handlers


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
    return Response(f'{{"hello": "{body.name * body.times}", "by": "{who}"}}', media_type="application/json")


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    router = APIRouter()
    router.add_api_route("/lean", greet, methods=["POST"], route_class_override=LeanRoute)
    router.add_api_route("/plain", greet, methods=["POST"])
    app.include_router(router)
    return app


GOOD = {"authorization": "Bearer good", "content-type": "application/json"}
CASES: list[tuple[str, dict[str, str], bytes]] = [
    ("valid", GOOD, b'{"name": "a", "times": 2}'),
    ("valid, charset", {**GOOD, "content-type": "application/json; charset=utf-8"}, b'{"name": "a"}'),
    ("no key", {"content-type": "application/json"}, b'{"name": "a"}'),
    ("no key, bad field", {"content-type": "application/json"}, b'{"name": 5}'),
    ("no key, malformed JSON", {"content-type": "application/json"}, b'{"name": '),
    ("bad field", GOOD, b'{"name": "a", "times": "many"}'),
    ("unknown field", GOOD, b'{"name": "a", "extra": 1}'),
    ("malformed JSON", GOOD, b'{"name": "a"'),
    ("empty body", GOOD, b""),
    ("JSON array", GOOD, b"[1]"),
    ("form content type", {**GOOD, "content-type": "application/x-www-form-urlencoded"}, b"name=a"),
    ("vendor JSON type", {**GOOD, "content-type": "application/vnd.x+json"}, b'{"name": "a"}'),
    ("no content type", {"authorization": "Bearer good"}, b'{"name": "a"}'),
]


@pytest.mark.parametrize(("case", "headers", "body"), CASES, ids=[c[0] for c in CASES])
def test_lean_route_answers_as_fastapi_does(case: str, headers: dict[str, str], body: bytes) -> None:
    with TestClient(_app()) as client:
        lean = client.post("/lean", content=body, headers=headers)
        plain = client.post("/plain", content=body, headers=headers)
    assert (lean.status_code, lean.json(), lean.headers.get("www-authenticate")) == (
        plain.status_code,
        plain.json(),
        plain.headers.get("www-authenticate"),
    )


@pytest.fixture
def solved(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The routes whose requests went through FastAPI's dependency solving."""
    calls: list[str] = []
    original = fastapi.dependencies.utils.solve_dependencies

    async def counting(*, request: Request, **kwargs: Any) -> Any:
        calls.append(request.url.path)
        return await original(request=request, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    return calls


def test_a_well_formed_call_skips_dependency_solving_and_others_do_not(solved: list[str]) -> None:
    with TestClient(_app()) as client:
        assert client.post("/lean", json={"name": "a"}, headers=GOOD).json() == {"hello": "a", "by": "tester"}
        assert solved == []
        assert client.post("/lean", json={"name": "a"}).status_code == 401  # the dependency raised, lean
        assert solved == []
        assert client.post("/lean", json={"name": 1}, headers=GOOD).status_code == 422
        assert solved == ["/lean"]
        client.post("/plain", json={"name": "a"}, headers=GOOD)
        assert solved == ["/lean", "/plain"]


def test_dependency_overrides_are_honoured(solved: list[str]) -> None:
    app = _app()

    async def someone_else() -> str:
        return "override"

    app.dependency_overrides[caller] = someone_else
    with TestClient(app) as client:
        response = client.post("/lean", json={"name": "a"})
    assert response.json() == {"hello": "a", "by": "override"}
    assert solved == ["/lean"]


def test_the_resolve_route_is_lean() -> None:
    from roster_api.accounts.router import router

    routes = [r for r in router.routes if getattr(r, "path", None) == "/v1/resolve"]
    assert [type(r) for r in routes] == [LeanRoute]


async def query_param(body: Greeting, page: int = 1) -> Response:
    return Response()


def sync_endpoint(body: Greeting) -> Response:
    return Response()


async def no_body() -> Response:
    return Response()


def sync_dependency(request: Request) -> str:
    return "x"


async def with_sync_dependency(body: Greeting, who: Annotated[str, Depends(sync_dependency)]) -> Response:
    return Response()


@pytest.mark.parametrize("endpoint", [query_param, sync_endpoint, no_body, with_sync_dependency])
def test_a_shape_the_lean_path_cannot_take_is_refused_when_the_route_is_built(endpoint: Any) -> None:
    router = APIRouter()
    with pytest.raises(TypeError, match="LeanRoute"):
        router.add_api_route("/x", endpoint, methods=["POST"], route_class_override=LeanRoute)
