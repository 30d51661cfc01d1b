from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from roster_api import notices
from roster_api.accounts import runtime as resolve_runtime
from roster_api.accounts.router import LEAN_ROUTES
from roster_api.accounts.router import router as accounts_router
from roster_api.auditlog import router as audit_router
from roster_api.auth import KeyCache, watch_revocations
from roster_api.console import web as console_web
from roster_api.console.apidocs import install_offline_docs
from roster_api.console.router import router as console_router
from roster_api.db import is_ready, make_engine
from roster_api.districts.router import disposals_router
from roster_api.districts.router import router as districts_router
from roster_api.importing import partials
from roster_api.importing.router import router as imports_router
from roster_api.intake.delivery import deliver_results_files, stop_results_files
from roster_api.intake.router import host_key_router as sftp_host_key_router
from roster_api.intake.router import nightly_router
from roster_api.intake.router import router as sftp_credentials_router
from roster_api.jobs.nightly import NightlyScheduler
from roster_api.jobs.worker import ImportWorker
from roster_api.lean_route import install_lean_lane
from roster_api.notices.router import router as notices_router
from roster_api.roster.router import router as roster_router
from roster_api.settings import Settings
from roster_api.text_input import TextInputGuard
from roster_shared.errors import ErrorCode, envelope
from roster_shared.web import configure_logging, install_observability


async def _sweep_partials(data_dir: Path) -> None:
    """Every few minutes, the partial uploads of processes that died (another replica, say)."""
    while True:
        await asyncio.sleep(partials.SWEEP_EVERY_SECONDS)
        try:
            await run_in_threadpool(partials.remove_dead_partials, data_dir)
        except OSError as exc:
            logging.getLogger("roster_api.uploads").warning(
                "partial upload sweep failed", extra={"fields": {"error": type(exc).__name__}}
            )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url, pool_size=settings.db_pool_size)
        app.state.engine = engine
        app.state.key_cache = KeyCache()
        # PostgreSQL: hears every key change (revocation) and only then lets keys be cached
        revocations = watch_revocations(settings.database_url, app.state.key_cache)
        # what a killed process was receiving is removed before this one takes uploads
        await run_in_threadpool(partials.remove_dead_partials, settings.data_dir)
        sweeper = asyncio.create_task(_sweep_partials(settings.data_dir))
        await resolve_runtime.start(app, settings)
        # import outcomes reach SFTP districts as results files (written after each outcome commits)
        deliver_results_files(settings=settings, engine=engine)
        # result notices (email, webhook): subscribed before the worker starts, so no outcome goes unheard
        app.state.notices = notices.register(settings, engine)
        # the nightly re-sync scheduler: in this process unless ROSTER_RUN_SCHEDULER=false
        scheduler = NightlyScheduler(engine=engine, settings=settings) if settings.run_scheduler else None
        if scheduler is not None:
            scheduler.start()
        # the import worker: in this process unless ROSTER_RUN_WORKER=false
        worker = ImportWorker(engine=engine, settings=settings) if settings.run_worker else None
        if worker is not None:
            worker.start()
        try:
            yield
        finally:
            if scheduler is not None:
                await run_in_threadpool(scheduler.stop)
            if worker is not None:
                await run_in_threadpool(worker.stop)
            await run_in_threadpool(notices.unregister, app.state.notices)
            await resolve_runtime.stop(app)
            stop_results_files()
            sweeper.cancel()
            if revocations is not None:
                await run_in_threadpool(revocations.stop)
            engine.dispose()

    app = FastAPI(
        title="roster-api",
        version="0.1.0",
        description="Roster sync and account resolution for RocketLit and InnerOrbit.",
        lifespan=lifespan,
        docs_url=None,  # offline /docs and /redoc: install_offline_docs
        redoc_url=None,
        # the service's own metrics and logs (roster_shared.web) are its observability; FastAPI's
        # OpenTelemetry bridge asked on every request whether a provider was set up (9 us of a resolve)
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    console_web.use_notice_key(settings)
    configure_logging("roster-api", settings.log_level)
    # inside the request-id middleware (added next), so a refusal is logged with its request id
    app.add_middleware(TextInputGuard)
    install_observability(app, "roster-api")

    async def database_unavailable(_: Request, exc: Exception) -> Response:
        # unreachable, failing over, or (SQLite) locked by a long import: the client may retry; not a 500
        logging.getLogger("errors").warning("database unavailable: %s", type(exc).__name__)
        return JSONResponse(
            envelope(ErrorCode.SERVICE_UNAVAILABLE, "The database is busy or unreachable; retry shortly."),
            status_code=503,
            headers={"Retry-After": "5"},
        )

    app.add_exception_handler(sa.exc.OperationalError, database_unavailable)
    app.add_exception_handler(sa.exc.TimeoutError, database_unavailable)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> JSONResponse:
        """The database answers and is migrated to head."""
        ready, detail = await run_in_threadpool(is_ready, app.state.engine)
        if ready:
            return JSONResponse({"status": "ready"})
        return JSONResponse(envelope(ErrorCode.SERVICE_UNAVAILABLE, detail), status_code=503)

    # first: the router answers every Clever login, and routes are matched in the order they are added
    app.include_router(accounts_router)
    app.include_router(districts_router)
    app.include_router(imports_router)
    app.include_router(notices_router)
    app.include_router(roster_router)
    app.include_router(audit_router)
    app.include_router(disposals_router)
    app.include_router(sftp_credentials_router)
    app.include_router(sftp_host_key_router)
    app.include_router(nightly_router)
    app.include_router(console_router)
    install_offline_docs(app)
    install_lean_lane(app, LEAN_ROUTES)
    return app
