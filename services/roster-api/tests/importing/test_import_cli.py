"""The operator's import commands against a real database (SQLite and PostgreSQL): `roster-api import`
exit codes per outcome, `imports list|show|approve|discard`, `why REFERENCE`, and a help text without
type tags."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from roster_api.cli import app
from roster_api.db import session_scope
from roster_api.importing import apply as apply_mod
from roster_api.jobs.worker import ImportWorker
from roster_api.models import District, ImportRun, License, LoginAttempt
from roster_api.settings import Settings

from .import_rows import HEADER, csv_bytes, student

ROSTER = [student(n) for n in range(1, 21)]


@pytest.fixture
def cli(
    roster_engine: sa.Engine, roster_settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Cli:
    monkeypatch.setenv("ROSTER_DATABASE_URL", roster_settings.database_url)
    monkeypatch.setenv("ROSTER_DATA_DIR", str(roster_settings.data_dir))
    with session_scope(roster_engine) as session:
        session.add(District(id="d1", name="D1"))
        session.flush()
        session.add(License(district_id="d1", product="rocketlit", seats=100))
    return Cli(roster_engine, roster_settings, tmp_path)


class Cli:
    def __init__(self, engine: sa.Engine, settings: Settings, tmp: Path) -> None:
        self.engine, self.settings, self.tmp = engine, settings, tmp
        self.runner = CliRunner()
        self.n = 0

    def __call__(self, *args: str) -> Any:
        return self.runner.invoke(app, list(args))

    def file(self, data: bytes) -> str:
        self.n += 1
        path = self.tmp / f"roster{self.n}.csv"
        path.write_bytes(data)
        return str(path)

    def imports(self, data: bytes, *extra: str) -> tuple[int, dict[str, Any]]:
        result = self("import", self.file(data), "--district", "d1", "--wait", "--json", *extra)
        return result.exit_code, json.loads(result.stdout)


def test_import_exit_codes_follow_the_outcome(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    code, body = cli.imports(csv_bytes(ROSTER))
    assert (code, body["status"], body["source"]) == (0, "applied", "cli")
    assert body["report"]["changes"]["students"]["created"] == 20
    assert cli.imports(csv_bytes(ROSTER))[0:1] == (0,)  # skipped: the same bytes
    code, body = cli.imports(csv_bytes(ROSTER[:5]), "--dry-run")
    assert (code, body["status"]) == (0, "validated")
    code, body = cli.imports(csv_bytes(ROSTER[:5]))
    assert (code, body["status"]) == (3, "held")
    code, body = cli.imports(csv_bytes(ROSTER, header=[h for h in HEADER if h != "school_id"]))
    assert (code, body["status"]) == (4, "rejected")

    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(apply_mod, "write_plan", broken)
    code, body = cli.imports(csv_bytes([*ROSTER, student(21)]))
    assert (code, body["status"]) == (1, "failed")


def test_import_without_wait_queues_it_for_the_worker(cli: Cli) -> None:
    result = cli("import", cli.file(csv_bytes(ROSTER)), "--district", "d1", "--json")
    assert result.exit_code == 0, result.output
    queued = json.loads(result.stdout)
    assert queued["status"] == "queued"
    ImportWorker(engine=cli.engine, settings=cli.settings).run_until_idle()
    shown = cli("imports", "show", queued["id"])
    assert shown.exit_code == 0
    assert "applied" in shown.stdout
    assert "students" in shown.stdout  # the changes table


def test_import_of_an_unknown_district_or_missing_file(cli: Cli) -> None:
    result = cli("import", cli.file(csv_bytes(ROSTER)), "--district", "nope", "--wait")
    assert result.exit_code == 2
    assert "nope" in result.stderr
    assert cli("import", str(cli.tmp / "missing.csv"), "--district", "d1").exit_code == 2


def test_list_show_approve_and_discard(cli: Cli) -> None:
    cli.imports(csv_bytes(ROSTER))
    _, held = cli.imports(csv_bytes(ROSTER[:5]))
    listed = cli("imports", "list", "--district", "d1", "--status", "held", "--json")
    assert listed.exit_code == 0
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [held["id"]]
    table = cli("imports", "list", "--district", "d1")
    assert held["id"] in table.stdout
    shown = cli("imports", "show", held["id"])
    assert "Why it is held" in shown.stdout
    approved = cli("imports", "approve", held["id"])
    assert approved.exit_code == 0, approved.output
    ImportWorker(engine=cli.engine, settings=cli.settings).run_until_idle()
    with session_scope(cli.engine) as session:
        run = session.get(ImportRun, held["id"])
        assert run is not None
        assert (run.status, run.decided_by) == ("applied", run.decided_by)
        assert (run.decided_by or "").startswith("cli:")
    _, older = cli.imports(csv_bytes(ROSTER[:1]))
    _, newer = cli.imports(csv_bytes(ROSTER[:2]))
    assert (older["status"], newer["status"]) == ("held", "held")
    refused = cli("imports", "discard", older["id"])
    assert refused.exit_code == 2
    assert "IMPORT_SUPERSEDED" in refused.stderr
    assert newer["id"] in refused.stderr
    assert cli("imports", "discard", newer["id"]).exit_code == 0
    assert cli("imports", "show", "imp_nope").exit_code == 2


def test_why_explains_a_failed_login(cli: Cli) -> None:
    with session_scope(cli.engine) as session:
        session.add(
            LoginAttempt(
                reference="LA-7KQ2M-9XPDH",
                product="rocketlit",
                district_id="d1",
                clever_district_id="5f0c8f3e2a1b4c0012345678",
                clever_user_id="5f0c8f3e2a1b4c0087654321",
                clever_role="student",
                outcome="failure",
                reason="no_account",
                rule="clever_id",
                diagnosis="No rostered student has this Clever ID or email.",
            )
        )
    result = cli("why", "la7kq2m9xpdh")
    assert result.exit_code == 0, result.output
    assert "No rostered student has this Clever ID or email." in result.stdout
    assert "no_account" in result.stdout
    as_json = json.loads(cli("why", "LA-7KQ2M-9XPDH", "--json").stdout)
    assert as_json["roster_now"] == {"licensed": True, "clever_id_match": None}
    missing = cli("why", "LA-AAAAA-BBBBB")
    assert missing.exit_code == 2
    assert "no login attempt" in missing.stderr


@pytest.mark.parametrize(
    "command", [[], ["import"], ["imports"], ["imports", "list"], ["imports", "approve"], ["why"], ["worker"]]
)
def test_help_has_no_type_tags(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    for tag in ("<bool>", "<str>", "<int>", "<file>", "<path>", "{"):
        assert tag not in result.stdout, (command, tag)
