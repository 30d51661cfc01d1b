"""Lifespan hooks for resolve: the per-key rate limiter, on PostgreSQL the async psycopg pool, and
freezing the start-up objects out of the garbage collector's way."""

from __future__ import annotations

import gc

from fastapi import FastAPI

from roster_api.accounts.pg import PgResolver
from roster_api.accounts.router import RateLimiter
from roster_api.settings import Environment, Settings

_frozen = False


def _freeze_startup_objects() -> None:
    """Once per process: the objects alive after start-up (modules, routes, schemas, metadata; ~170,000)
    live as long as the process, yet every full collection walked them all: 250 ms pauses a few times a
    minute under load, which were the resolve p99. Frozen, they are skipped (gc.freeze). A request
    leaves no cyclic garbage behind, yet the default young-generation threshold (700 allocations) ran
    ~75 collections a second at 700 logins/s, 5 % of the worker's time; at 10,000 it runs none."""
    global _frozen
    if not _frozen:
        gc.collect()
        gc.freeze()
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(10_000, older, oldest)
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
    # production only: in a test run, many apps share one process and collector timing is the suite's
    if settings.environment is Environment.PRODUCTION:
        _freeze_startup_objects()


async def stop(app: FastAPI) -> None:
    resolver: PgResolver | None = getattr(app.state, "resolver", None)
    if resolver is not None:
        await resolver.close()
        app.state.resolver = None
