"""Lifespan hooks for resolve: the per-key rate limiter, on PostgreSQL the async psycopg pool, and
freezing the start-up objects out of the garbage collector's way."""

from __future__ import annotations

import gc

from fastapi import FastAPI

from roster_api.accounts.pg import PgResolver
from roster_api.accounts.router import RateLimiter
from roster_api.settings import Settings

_frozen = False


def _freeze_startup_objects() -> None:
    """Once per process: the objects alive after start-up (modules, routes, schemas, metadata; ~170,000)
    live as long as the process, yet every full collection walked them all: 250 ms pauses a few times a
    minute under load, which were the resolve p99. Frozen, they are skipped (gc.freeze)."""
    global _frozen
    if not _frozen:
        gc.collect()
        gc.freeze()
        _frozen = True


async def start(app: FastAPI, settings: Settings) -> None:
    app.state.resolve_limiter = RateLimiter(settings.resolve_rate_per_second, settings.resolve_rate_burst)
    app.state.resolver = None
    if not settings.is_sqlite:
        resolver = PgResolver(
            settings.database_url, min_size=settings.resolve_pool_min, max_size=settings.resolve_pool_max
        )
        await resolver.open()
        app.state.resolver = resolver
    _freeze_startup_objects()


async def stop(app: FastAPI) -> None:
    resolver: PgResolver | None = getattr(app.state, "resolver", None)
    if resolver is not None:
        await resolver.close()
        app.state.resolver = None
