"""`create_app(settings)`: the lifespan builds the store, keys, HTTP clients and roster-api client; nothing
connects or reads the environment at import time."""

from __future__ import annotations

import html
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import HTMLResponse, Response

from roster_shared.client import RosterApiClient
from roster_shared.errors import ErrorCode, envelope
from roster_shared.transport import LeanTransport
from roster_shared.web import configure_logging, install_observability
from sso_gateway import login, oidc, pages
from sso_gateway.keys import KeyRing
from sso_gateway.runtime import Gateway, GatewayMetrics, UnknownProduct
from sso_gateway.security import SecurityHeadersMiddleware
from sso_gateway.settings import Settings
from sso_gateway.store import Clock, RedisStore, SqliteStore, Store, StoreUnavailable


def _outbound(settings: Settings) -> httpx.AsyncBaseTransport | None:
    """The transport of the calls to Clever and roster-api: the lean one (httpcore's per-request work
    was half the gateway's CPU per login), or httpx's own (None) when SSO_OUTBOUND_TRANSPORT=httpx."""
    return LeanTransport() if settings.outbound_transport == "lean" else None


def create_app(
    settings: Settings | None = None,
    *,
    clever_transport: httpx.AsyncBaseTransport | None = None,
    roster_transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock = time.time,
) -> FastAPI:
    """Transports and clock are injected by tests (the simulator and roster-api in-process)."""
    settings = settings or Settings()
    keys = KeyRing.from_settings(settings)  # a bad key stops start-up here, with the reason

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store: Store
        if settings.redis_url is not None:
            store = RedisStore(settings.redis_url.get_secret_value(), settings.redis_prefix)
        else:
            store = SqliteStore(settings.resolved_session_db, clock)
        timeout = httpx.Timeout(
            settings.clever_timeout_seconds, connect=min(3.0, settings.clever_timeout_seconds)
        )
        clever_http = httpx.AsyncClient(
            timeout=timeout,
            follow_redirects=False,
            transport=clever_transport or _outbound(settings),
            headers={"User-Agent": "sso-gateway"},
        )
        roster_timeout = settings.roster_api_timeout_seconds
        roster = RosterApiClient(
            settings.roster_api_url,
            settings.roster_api_key.get_secret_value(),
            timeout=httpx.Timeout(roster_timeout, connect=min(2.0, roster_timeout)),
            transport=roster_transport or _outbound(settings),
        )
        app.state.gateway = Gateway(
            settings=settings,
            store=store,
            keys=keys,
            clever_http=clever_http,
            roster=roster,
            metrics=gateway_metrics,
            clock=clock,
        )
        try:
            yield
        finally:
            await clever_http.aclose()
            await roster.aclose()
            await store.close()

    app = FastAPI(
        title="sso-gateway",
        version="0.1.0",
        description="Log in with Clever for RocketLit and InnerOrbit; OIDC provider to their frontends.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    configure_logging("sso-gateway", settings.log_level)
    metrics = install_observability(app, "sso-gateway")
    gateway_metrics = GatewayMetrics(metrics)
    app.add_middleware(SecurityHeadersMiddleware, hsts=not settings.development)
    if settings.trusted_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.trusted_hosts)

    async def store_down(request: Request, exc: Exception) -> Response:
        if request.url.path in ("/token", "/userinfo"):
            body = {"error": "temporarily_unavailable", "error_description": "Session store unavailable."}
            return JSONResponse(body, status_code=503)
        # the product, when the path names it (/login/<product>/start, /callback/clever/<product>)
        gw: Gateway = request.app.state.gateway
        segments = request.url.path.split("/")
        names = [gw.products[p].display_name for p in gw.products if p.value in segments]
        return pages.problem_page(
            pages.Failure.STORE_UNAVAILABLE, product_name=names[0] if names else "Login", retry_url=None
        )

    app.add_exception_handler(StoreUnavailable, store_down)

    async def unknown_product(_: Request, __: Exception) -> Response:
        return pages.problem_page(pages.Failure.BAD_REQUEST, product_name="Login", retry_url=None)

    app.add_exception_handler(UnknownProduct, unknown_product)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz(request: Request) -> JSONResponse:
        """roster-api answers /readyz and the session store answers."""
        gw: Gateway = request.app.state.gateway
        if not await gw.store.ping():
            return JSONResponse(envelope(ErrorCode.SERVICE_UNAVAILABLE, "session store unreachable"), 503)
        if not await gw.roster.ready():
            return JSONResponse(envelope(ErrorCode.SERVICE_UNAVAILABLE, "roster-api not ready"), 503)
        return JSONResponse({"status": "ready"})

    @app.get("/static/gateway.css", include_in_schema=False)
    async def css() -> Response:
        return Response(pages.stylesheet(), media_type="text/css")

    @app.get("/", include_in_schema=False)
    async def index(request: Request) -> HTMLResponse:
        gw: Gateway = request.app.state.gateway
        links = "".join(
            f"<li><a href='/login/{p.value}'>{html.escape(conf.display_name)}</a></li>"
            for p, conf in gw.products.items()
        )
        return HTMLResponse(
            "<!doctype html><title>sso-gateway</title><link rel='stylesheet' href='/static/gateway.css'>"
            f"<main><h1>Log in with Clever</h1><ul>{links}</ul></main>"
        )

    app.include_router(oidc.router)
    app.include_router(login.router)
    return app
