"""`roster-api serve | migrate | keys create` (later: worker, sftp, nightly). Every command reads
ROSTER_DATABASE_URL and the other ROSTER_ settings."""

from __future__ import annotations

from typing import Annotated

import typer

from roster_api.settings import Settings

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="roster-api: roster sync for RocketLit and InnerOrbit"
)
keys_app = typer.Typer(no_args_is_help=True, help="Manage API keys")
app.add_typer(keys_app, name="keys")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (ROSTER_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (ROSTER_PORT)")] = None,
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
def migrate() -> None:
    """Upgrade the database to the latest schema."""
    from roster_api.db import migrate as run_migrations

    settings = Settings()
    run_migrations(settings.database_url)
    typer.echo("database migrated to head", err=True)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="Who uses the key, e.g. sso-gateway")],
    scope: Annotated[list[str], typer.Option(help="admin, roster:read, roster:write or resolve; repeatable")],
    district: Annotated[str | None, typer.Option(help="Bind the key to one district")] = None,
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


def main() -> None:
    app()
