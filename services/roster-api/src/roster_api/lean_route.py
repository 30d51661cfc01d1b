"""A FastAPI route class for a hot JSON route: a well-formed request skips FastAPI's generic request
handling (dependency solving, which was a fifth of a resolve's server CPU); anything else goes through
FastAPI's own handler, so what a client sees does not change. `LeanLane`, at the router's entry, also skips
route matching and FastAPI's per-request wrapper for such a request (README, Performance).

The route is declared as usual (OpenAPI, `response_model`, dependencies). Only a simple shape qualifies:
one JSON body that is a pydantic model, dependencies that are async callables of the request alone, no
path, query, header or cookie parameters, and an async endpoint that returns a `Response`. Any other
shape is refused when the route is built. Per request the lean path runs when the body is
`application/json` and validates against the model; it then calls the dependencies in declared order
(an API-key check raises 401/403 just as under FastAPI, since FastAPI too solves them after it has read
the body) and the endpoint. A body that does not validate, another content type, or dependency overrides
(tests) go to FastAPI's handler, which answers with its validation envelope as before."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, _effective_route_context_var
from pydantic import BaseModel, ValidationError
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from roster_api.text_input import read_body

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


@dataclass(frozen=True)
class _Plan:
    body_name: str
    body_model: type[BaseModel]
    dependencies: tuple[tuple[str, Callable[[Request], Awaitable[Any]]], ...]
    endpoint: Callable[..., Awaitable[Any]]


def _is_async(call: Callable[..., Any]) -> bool:
    # a function, or an instance whose __call__ is async (roster_api.deps.Require)
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(type(call).__call__)


def _dependency(dep: Dependant) -> tuple[str, Callable[[Request], Awaitable[Any]]]:
    params = (
        dep.path_params,
        dep.query_params,
        dep.header_params,
        dep.cookie_params,
        dep.body_params,
        dep.dependencies,
    )
    if dep.call is None or dep.name is None or any(params) or dep.request_param_name is None:
        raise TypeError(f"LeanRoute: dependency {dep.call!r} must be an async callable of the request alone")
    if not _is_async(dep.call):
        raise TypeError(f"LeanRoute: dependency {dep.call!r} must be async")
    return dep.name, dep.call


def plan(dependant: Dependant, embed_body_fields: bool) -> _Plan:
    """What the lean path calls, from the route's dependant; TypeError for a shape it cannot take."""
    if dependant.call is None or not inspect.iscoroutinefunction(dependant.call):
        raise TypeError("LeanRoute: the endpoint must be async")
    if any((dependant.path_params, dependant.query_params, dependant.header_params, dependant.cookie_params)):
        raise TypeError("LeanRoute: the endpoint may take no path, query, header or cookie parameters")
    if len(dependant.body_params) != 1 or embed_body_fields:
        raise TypeError("LeanRoute: the endpoint must take exactly one JSON body, not embedded")
    body = dependant.body_params[0]
    model = body.field_info.annotation
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError("LeanRoute: the body must be a pydantic model")
    return _Plan(
        body_name=body.name,
        body_model=model,
        dependencies=tuple(_dependency(dep) for dep in dependant.dependencies),
        endpoint=dependant.call,
    )


def _plain_json(request: Request) -> bool:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media == "application/json"


def _plain_json_scope(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return bytes(value).split(b";", 1)[0].strip().lower() == b"application/json"
    return False


async def _call(lean: _Plan, request: Request, body: BaseModel) -> Response:
    """The dependencies in declared order, then the endpoint."""
    values: dict[str, Any] = {}
    for name, call in lean.dependencies:
        values[name] = await call(request)
    values[lean.body_name] = body
    response = await lean.endpoint(**values)
    if not isinstance(response, Response):
        raise TypeError("LeanRoute: the endpoint must return a Response")
    return response


class LeanRoute(APIRoute):
    """`router.add_api_route(path, endpoint, route_class_override=LeanRoute, ...)`."""

    def get_route_handler(self) -> Handler:
        full = super().get_route_handler()
        # FastAPI builds a handler per inclusion, with this context var naming the route as included (prefix
        # and router dependencies applied), as APIRoute.get_route_handler reads it
        route: Any = self
        context = _effective_route_context_var.get()
        if context is not None and context.original_route is self:
            route = context
        lean = plan(route.dependant, route._embed_body_fields)
        overrides_provider = route.dependency_overrides_provider

        async def handler(request: Request) -> Response:
            if getattr(overrides_provider, "dependency_overrides", None) or not _plain_json(request):
                return await full(request)
            try:
                body = lean.body_model.model_validate_json(await request.body())
            except ValidationError:
                return await full(request)  # the body is cached on the request: FastAPI reads it again
            return await _call(lean, request, body)

        return handler


class LeanLane:
    """The app router's entry (`router.middleware_stack`), so inside every middleware and the exception
    handlers: a well-formed call of a lean route (its method and exact path, no query string, a plain
    JSON body that validates, no dependency overrides, no FastAPI telemetry) is served here, without route
    matching and FastAPI's per-request wrapper (two exit stacks and an exception wrapper), a quarter to a
    third of the app's CPU per resolve. Its exceptions reach the same handlers through the app's
    exception middleware. Any other request, or a body this lane read but will not serve (it is
    handed on whole), goes to the router."""

    def __init__(self, app: ASGIApp, *, owner: FastAPI, routes: Iterable[LeanRoute]) -> None:
        self.app = app
        self.owner = owner
        self.routes: dict[tuple[str, str], tuple[LeanRoute, _Plan]] = {}
        for route in routes:
            lean = plan(route.dependant, route._embed_body_fields)
            for method in route.methods or ():
                self.routes[(method, route.path)] = (route, lean)

    def _entry(self, scope: Scope) -> tuple[LeanRoute, _Plan] | None:
        if scope["type"] != "http" or scope.get("query_string") or scope.get("root_path"):
            return None
        entry = self.routes.get((scope["method"], scope["path"]))
        if entry is None or "fastapi.telemetry" in scope or self.owner.dependency_overrides:
            return None
        return entry if _plain_json_scope(scope) else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        entry = self._entry(scope)
        if entry is None:
            await self.app(scope, receive, send)
            return
        raw, replay = await read_body(receive)
        route, lean = entry
        try:
            body = lean.body_model.model_validate_json(raw) if raw is not None else None
        except ValidationError:
            body = None
        if body is None:
            await self.app(scope, replay, send)  # FastAPI answers as it does without the lane
            return
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = {}
        scope.setdefault("router", self.owner.router)
        response = await _call(lean, Request(scope, replay, send), body)
        await response(scope, replay, send)


def install_lean_lane(app: FastAPI, routes: Iterable[LeanRoute]) -> None:
    """Serves these routes' well-formed calls from `LeanLane`; each must be included as declared (no
    prefix) and the router may have no middleware of its own (the lane would pass it by): both are
    checked here."""
    if app.router.middleware_stack != app.router.app:
        raise ValueError("LeanLane: the router has middleware of its own")
    routes = list(routes)
    for route in routes:
        if app.url_path_for(route.name) != route.path:
            raise ValueError(f"LeanLane: {route.path} is served at {app.url_path_for(route.name)}")
    app.router.middleware_stack = LeanLane(app.router.middleware_stack, owner=app, routes=routes)
