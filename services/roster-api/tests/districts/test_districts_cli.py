"""`roster-api districts create | list`: onboarding from a shell, through the same service as the API."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select
from typer.testing import CliRunner

from roster_api.cli import app as cli
from roster_api.models import AuditEvent, District, License


@pytest.fixture
def database_url(sqlite_template: Path, tmp_path: Path) -> str:
    """The CLI only parses and calls the districts service (tested on both databases elsewhere)."""
    path = tmp_path / "roster.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def run(database_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("ROSTER_DATABASE_URL", database_url)
    return CliRunner()


def test_create_licenses_links_and_lists(run: CliRunner, roster_engine: sa.Engine) -> None:
    args = ["districts", "create", "springfield-usd", "--name", "Springfield USD", "--seats", "rocketlit=500"]
    created = run.invoke(cli, [*args, "--clever-district-id", "5a1b2c3d4e5f60718293a4b5"])
    assert created.exit_code == 0, created.output
    assert created.stdout.strip() == "springfield-usd"
    with Session(roster_engine) as session:
        district = session.get(District, "springfield-usd")
        assert district is not None
        assert district.clever_district_id == "5a1b2c3d4e5f60718293a4b5"
        assert session.get(License, ("springfield-usd", "rocketlit")).seats == 500  # type: ignore[union-attr]
        actors = session.exec(select(AuditEvent.actor).where(AuditEvent.action == "district.create")).all()
    assert list(actors) == ["cli"]
    listed = run.invoke(cli, ["districts", "list"])
    assert listed.stdout.splitlines() == ["springfield-usd\t5a1b2c3d4e5f60718293a4b5\tSpringfield USD"]
    again = run.invoke(cli, args)
    assert again.exit_code == 2
    assert "already exists" in again.output


@pytest.mark.parametrize(
    "extra",
    [["--seats", "rocketlit=lots"], ["--seats", "chess=5"], ["--clever-district-id", "nope"]],
)
def test_bad_input_is_a_message_not_a_traceback(run: CliRunner, extra: list[str]) -> None:
    result = run.invoke(cli, ["districts", "create", "d1", "--name", "D1", *extra])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
