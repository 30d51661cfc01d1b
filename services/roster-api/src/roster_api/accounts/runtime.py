"""Lifespan hooks for resolve: the per-key rate limiter and, on PostgreSQL, the async psycopg pool."""

from __future__ import annotations

from fastapi import FastAPI

from roster_api.accounts.pg import PgResolver
from roster_api.accounts.router import RateLimiter
from roster_api.settings import Settings


async def start(app: FastAPI, settings: Settings) -> None:
    app.state.resolve_limiter = RateLimiter(settings.resolve_rate_per_second, settings.resolve_rate_burst)
    app.state.resolver = None
    if not settings.is_sqlite:
        resolver = PgResolver(
            settings.database_url, min_size=settings.resolve_pool_min, max_size=settings.resolve_pool_max
        )
        await resolver.open()
        app.state.resolver = resolver


async def stop(app: FastAPI) -> None:
    resolver: PgResolver | None = getattr(app.state, "resolver", None)
    if resolver is not None:
        await resolver.close()
        app.state.resolver = None
