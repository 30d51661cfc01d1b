"""Lifespan hooks for resolve: the per-key rate limiter, the resolve store (the async psycopg pool on
PostgreSQL, SQLAlchemy on SQLite), and freezing the start-up objects out of the garbage collector's way."""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import Annotated

import sqlalchemy as sa
from anyio import to_thread
from fastapi import Depends, FastAPI, Request

from roster_api.accounts.attempts import AttemptWriter
from roster_api.accounts.flow import ResolveStore
from roster_api.accounts.limits import RateLimiter
from roster_api.accounts.pg import PgStore
from roster_api.accounts.service import SqlStore
from roster_api.settings import Environment, Settings

_frozen = False


def _freeze_startup_objects() -> None:
    """Once per process: the objects alive after start-up (modules, routes, schemas, metadata) live as
    long as the process, yet every full collection walked them all, and those pauses were the resolve
    p99. Frozen, they are skipped (gc.freeze). A request leaves no cyclic garbage behind, so the
    young-generation threshold is raised too (README, Performance)."""
    global _frozen
    if not _frozen:
        gc.collect()
        gc.freeze()
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(10_000, older, oldest)
        _frozen = True


async def start(app: FastAPI, settings: Settings) -> None:
    engine: sa.Engine = app.state.engine
    limiter = RateLimiter(settings.resolve_rate_per_second, settings.resolve_rate_burst)
    store: ResolveStore
    if settings.is_sqlite:
        # attempts a resolve cannot write at once (an import holds the write lock) are written by it
        writer = AttemptWriter(engine)
        writer.start()
        store = SqlStore(engine, writer)
    else:
        pg = PgStore(
            settings.database_url, min_size=settings.resolve_pool_min, max_size=settings.resolve_pool_max
        )
        await pg.open()
        store = pg
    app.state.resolve_runtime = ResolveRuntime(store, limiter, settings.hash_pepper.get_secret_value())
    # production only: in a test run, many apps share one process and collector timing is the suite's
    if settings.environment is Environment.PRODUCTION:
        _freeze_startup_objects()


async def stop(app: FastAPI) -> None:
    runtime = getattr(app.state, "resolve_runtime", None)
    if runtime is not None and isinstance(runtime.store, PgStore):
        await runtime.store.close()
    if runtime is not None and isinstance(runtime.store, SqlStore) and runtime.store.writer is not None:
        await to_thread.run_sync(runtime.store.writer.stop)
    app.state.resolve_runtime = None


@dataclass(frozen=True)
class ResolveRuntime:
    """What `POST /v1/resolve` needs besides the request: built once at start-up."""

    store: ResolveStore
    limiter: RateLimiter
    pepper: str


async def get_resolve_runtime(request: Request) -> ResolveRuntime:
    # async: FastAPI runs a sync dependency in a worker thread, a hop per login
    runtime: ResolveRuntime = request.app.state.resolve_runtime
    return runtime


ResolveRuntimeDep = Annotated[ResolveRuntime, Depends(get_resolve_runtime)]


async def flush_attempts(request: Request) -> None:
    """Before a read of login attempts: the attempts SQLite's background writer still holds are
    written first, so an attempt is readable as soon as its resolve has answered."""
    runtime: ResolveRuntime | None = getattr(request.app.state, "resolve_runtime", None)
    if runtime is not None and isinstance(runtime.store, SqlStore) and runtime.store.writer is not None:
        await to_thread.run_sync(runtime.store.flush)
