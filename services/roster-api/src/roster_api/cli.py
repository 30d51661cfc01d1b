"""`roster-api serve | worker | migrate | keys | sftp | nightly | import | imports | why`. Every command
reads ROSTER_DATABASE_URL and the other ROSTER_ settings."""

from __future__ import annotations

from typing import Annotated

import typer
from typer.core import TyperArgument

from roster_api.cli_imports import import_file, imports_app, why
from roster_api.districts.cli import districts_app
from roster_api.importing.formats.cli import convert
from roster_api.settings import Settings


def _plain_argument_help() -> None:
    """typer labels every positional argument with a type tag and braces (`{FILE}`, `FILE <file>`);
    the help reads better without them, as click prints it (`FILE`)."""

    def usage_name(self: TyperArgument) -> str:
        return self.display_name_raw + ("..." if self.nargs != 1 else "")

    TyperArgument.display_type_rich = lambda self, ctx: None  # type: ignore[method-assign]
    TyperArgument._usage_display_name = usage_name  # type: ignore[method-assign]


_plain_argument_help()
# rich_markup_mode=None: plain help, without typer's type tags (`<bool>`, `<str>`) on every option
app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    help="roster-api: roster sync for RocketLit and InnerOrbit",
)
keys_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Manage API keys")
app.add_typer(keys_app, name="keys")
app.add_typer(districts_app, name="districts")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(metavar="HOST", help="Bind address (ROSTER_HOST)")] = None,
    port: Annotated[int | None, typer.Option(metavar="PORT", help="Port (ROSTER_PORT)")] = None,
) -> None:
    """Run the HTTP API (with the import worker unless ROSTER_RUN_WORKER=false)."""
    import uvicorn

    from roster_api.main import create_app

    settings = Settings()
    uvicorn.run(
        create_app(settings),
        host=host or settings.host,
        port=port if port is not None else settings.port,
        access_log=False,
        log_config=None,
        proxy_headers=False,
    )


@app.command()
def worker(
    once: Annotated[bool, typer.Option(help="Run the queued imports, then exit")] = False,
) -> None:
    """Run the import worker alone (for a deployment that keeps it out of `serve`)."""
    import signal

    from roster_api import notices
    from roster_api.db import make_engine
    from roster_api.jobs.worker import ImportWorker
    from roster_shared.web import configure_logging

    settings = Settings()
    configure_logging("roster-api-worker", settings.log_level)
    engine = make_engine(settings.database_url, pool_size=2)
    runner = ImportWorker(engine=engine, settings=settings)
    dispatcher = notices.register(settings, engine)  # result notices of the imports this runs
    try:
        if once:
            runner.sweep()
            done = runner.run_until_idle()
            typer.echo(f"{len(done)} import(s) run", err=True)
            return
        signal.signal(signal.SIGTERM, lambda *_: runner.stop(timeout=0))
        runner.start()
        try:
            runner.wait()
        except KeyboardInterrupt:
            runner.stop()
    finally:
        notices.unregister(dispatcher, timeout=30)
        engine.dispose()


@app.command()
def migrate() -> None:
    """Upgrade the database to the latest schema."""
    from roster_api.db import migrate as run_migrations

    settings = Settings()
    run_migrations(settings.database_url)
    typer.echo("database migrated to head", err=True)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(metavar="NAME", help="Who uses the key, e.g. sso-gateway")],
    scope: Annotated[
        list[str],
        typer.Option(metavar="SCOPE", help="admin, roster:read, roster:write or resolve; repeatable"),
    ],
    district: Annotated[
        str | None, typer.Option(metavar="DISTRICT", help="Bind the key to one district")
    ] = None,
) -> None:
    """Create an API key and print it alone on stdout. It is shown only this once."""
    from roster_api import audit
    from roster_api.auth import create_api_key
    from roster_api.db import make_engine, session_scope
    from roster_api.errors import RosterError

    settings = Settings()
    engine = make_engine(settings.database_url)
    try:
        with session_scope(engine) as session:
            key, raw = create_api_key(session=session, name=name, scopes=scope, district_id=district)
            audit.record(
                session=session,
                actor="cli",
                action="api_key.create",
                district_id=district,
                target=key.id,
                details={"name": key.name, "scopes": key.scopes},
            )
    except RosterError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from exc
    finally:
        engine.dispose()
    typer.echo(raw)


# --- key rotation for operators (the runbook in deploy/README.md uses these) ---


@keys_app.command("list")
def keys_list(
    district: Annotated[
        str | None, typer.Option(metavar="DISTRICT", help="Only keys bound to this district")
    ] = None,
    revoked: Annotated[bool, typer.Option(help="Include revoked keys")] = False,
) -> None:
    """List API keys (never the key itself): id, name, scopes, district, created, last used, revoked."""
    from roster_api.auth import list_api_keys
    from roster_api.db import make_engine, session_scope

    engine = make_engine(Settings().database_url)
    try:
        with session_scope(engine) as session:
            rows = list_api_keys(session=session, district_id=district, revoked=revoked)
            typer.echo("id\tname\tscopes\tdistrict\tcreated_at\tlast_used_at\trevoked_at")
            for key in rows:
                fields = [key.id, key.name, ",".join(key.scopes), key.district_id or "-"]
                fields += [str(t) if t else "-" for t in (key.created_at, key.last_used_at, key.revoked_at)]
                typer.echo("\t".join(fields))
    finally:
        engine.dispose()


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[
        str, typer.Argument(metavar="KEY_ID", help="The key's id, from `roster-api keys list`")
    ],
) -> None:
    """Revoke an API key. Every replica refuses it within the key cache's lifetime (seconds)."""
    from roster_api import audit
    from roster_api.auth import revoke_api_key
    from roster_api.db import make_engine, session_scope
    from roster_api.errors import NotFound

    engine = make_engine(Settings().database_url)
    try:
        with session_scope(engine) as session:
            try:
                key, revoked = revoke_api_key(session=session, key_id=key_id)
            except NotFound:
                typer.echo(f"error: no API key {key_id!r}; see `roster-api keys list`", err=True)
                raise typer.Exit(2) from None
            if not revoked:
                typer.echo(f"{key_id} was already revoked at {key.revoked_at}", err=True)
                return
            audit.record(
                session=session,
                actor="cli",
                action="api_key.revoke",
                district_id=key.district_id,
                target=key.id,
                details={"name": key.name},
            )
    finally:
        engine.dispose()
    typer.echo(f"revoked {key_id}", err=True)


@app.command()
def sftp(
    host: Annotated[str | None, typer.Option(metavar="HOST", help="Bind address (ROSTER_SFTP_HOST)")] = None,
    port: Annotated[
        int | None, typer.Option(metavar="PORT", help="Port (ROSTER_SFTP_PORT, default 2222)")
    ] = None,
) -> None:
    """Run the SFTP intake: districts upload roster CSVs and read results/ (until SIGINT/SIGTERM)."""
    import asyncio
    import logging
    import signal

    from roster_api.intake.sftp import SftpIntake
    from roster_shared.web import configure_logging

    settings = Settings()
    configure_logging("roster-api-sftp", settings.log_level)
    # asyncssh's own INFO lines repeat ours (and name every file opened); warnings still show.
    logging.getLogger("asyncssh").setLevel(logging.WARNING)

    async def run() -> None:
        intake = SftpIntake(settings=settings, host=host, port=port)
        try:
            await intake.start()
        except OSError as exc:
            await intake.stop()
            typer.echo(
                f"error: cannot listen on {intake.host}:{intake.port}: {exc.strerror or exc}", err=True
            )
            raise typer.Exit(2) from exc
        typer.echo(
            f"SFTP intake listening on {intake.host}:{intake.port}; host key {intake.host_key_fingerprint}",
            err=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await intake.stop()

    asyncio.run(run())


@app.command()
def nightly(
    district: Annotated[
        list[str] | None, typer.Option(metavar="DISTRICT", help="Only this district; repeatable")
    ] = None,
    due_only: Annotated[
        bool,
        typer.Option(
            "--due-only",
            help="Only districts whose local nightly time has come (for a cron every few minutes)",
        ),
    ] = False,
) -> None:
    """Queue each district's nightly file for import if it changed since the last applied import.

    Prints one line per district: `<district> <local date> <queued|skipped|pending|no_file|failed|
    already_done> [import id]`. Runs once per district per local night, however often it is started.
    The import worker (`roster-api serve` or `roster-api worker`) runs the queued imports."""
    from roster_api import notices
    from roster_api.db import make_engine
    from roster_api.jobs.nightly import outcome_line, run_nightly, unknown_districts
    from roster_shared.web import configure_logging

    settings = Settings()
    configure_logging("roster-api-nightly", settings.log_level)
    engine = make_engine(settings.database_url, pool_size=2)
    dispatcher = notices.register(settings, engine)  # a night without its file is told
    try:
        unknown = unknown_districts(engine, district or [])
        if unknown:
            typer.echo(f"error: no such district: {', '.join(unknown)}", err=True)
            raise typer.Exit(2)
        outcomes = run_nightly(engine=engine, settings=settings, district_ids=district, due_only=due_only)
    finally:
        notices.unregister(dispatcher, timeout=30)
        engine.dispose()
    for outcome in outcomes:
        typer.echo(outcome_line(outcome))
    if any(o.outcome == "failed" for o in outcomes):
        raise typer.Exit(1)


app.command("import")(import_file)
app.add_typer(imports_app, name="imports")
app.command("convert")(convert)  # roster-api convert INPUT --to v1 OUT.csv
app.command("why")(why)


def main() -> None:
    app()
