"""`roster-api districts create | list`: onboarding a district from a shell, with the same service (and
audit) as `POST /v1/districts` and the console."""

from __future__ import annotations

from typing import Annotated

import typer

from roster_api.settings import Settings

districts_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Create and list districts")


def _licenses(seats: list[str]) -> dict[str, dict[str, int]]:
    licenses: dict[str, dict[str, int]] = {}
    for item in seats:
        product, _, count = item.partition("=")
        if not count.isdigit():
            raise typer.BadParameter(
                f"{item!r}: write PRODUCT=SEATS, e.g. rocketlit=500", param_hint="--seats"
            )
        licenses[product.strip()] = {"seats": int(count)}
    return licenses


@districts_app.command("create")
def create(
    district_id: Annotated[str, typer.Argument(metavar="ID", help="Slug, e.g. springfield-usd")],
    name: Annotated[str, typer.Option(metavar="NAME", help="The district's name")],
    seats: Annotated[
        list[str] | None,
        typer.Option(metavar="PRODUCT=SEATS", help="License a product, e.g. rocketlit=500; repeatable"),
    ] = None,
    clever_district_id: Annotated[
        str | None, typer.Option(metavar="CLEVER_ID", help="Link the Clever district (24 hex digits)")
    ] = None,
    timezone: Annotated[str, typer.Option(metavar="TZ", help="IANA time zone of the nightly sync")] = (
        "America/New_York"
    ),
) -> None:
    """Create a district and print its id. Then: an SFTP login (`roster-api sftp ...` or the console's
    Settings), a first upload, and the console's readiness checklist."""
    from pydantic import ValidationError

    from roster_api.db import make_engine, session_scope
    from roster_api.districts import service
    from roster_api.districts.schemas import DistrictCreate
    from roster_api.errors import RosterError

    try:
        data = DistrictCreate.model_validate(
            {
                "id": district_id,
                "name": name,
                "clever_district_id": clever_district_id,
                "licenses": _licenses(seats or []),
                "sync": {"timezone": timezone},
            }
        )
    except ValidationError as exc:
        for error in exc.errors():
            typer.echo(f"error: {'.'.join(str(p) for p in error['loc'])}: {error['msg']}", err=True)
        raise typer.Exit(2) from exc
    engine = make_engine(Settings().database_url)
    try:
        with session_scope(engine) as session:
            service.create_district(session=session, data=data, actor="cli")
    except RosterError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from exc
    finally:
        engine.dispose()
    typer.echo(district_id)


@districts_app.command("list")
def list_all() -> None:
    """Every district: id, Clever district (or -), name."""
    from roster_api.db import make_engine, session_scope
    from roster_api.districts import service

    engine = make_engine(Settings().database_url)
    try:
        with session_scope(engine) as session:
            offset = 0
            while True:
                rows, total = service.list_districts(session=session, only=None, limit=500, offset=offset)
                for district in rows:
                    typer.echo(f"{district.id}\t{district.clever_district_id or '-'}\t{district.name}")
                offset += len(rows)
                if not rows or offset >= total:
                    break
    finally:
        engine.dispose()
