"""`roster-api import --wait` runs the import in its own process: the notice goes out from there, before
the command exits."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from roster_api.cli import app
from roster_api.db import session_scope
from roster_api.models import District, NoticeSetting
from roster_api.settings import Settings

from ..importing.import_rows import csv_bytes, row, student
from .conftest import SmtpServer

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def test_an_import_run_by_the_cli_sends_its_notice_before_it_exits(
    roster_engine: sa.Engine,
    roster_settings: Settings,
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("ROSTER_DATABASE_URL", roster_settings.database_url)
    monkeypatch.setenv("ROSTER_DATA_DIR", str(roster_settings.data_dir))
    monkeypatch.setenv("ROSTER_SMTP_URL", f"smtp://127.0.0.1:{smtp_server.port}")
    monkeypatch.setenv("ROSTER_SMTP_FROM", "roster@rocketlit.example")
    with session_scope(roster_engine) as session:
        session.add(District(id="d1", name="D1"))
        session.flush()
        session.add(NoticeSetting(district_id="d1", contacts=["it-team@d1.example"]))
    path = tmp_path / "roster.csv"
    path.write_bytes(csv_bytes([row(), student(2, student_email="not-an-email")]))

    result = CliRunner().invoke(app, ["import", str(path), "--district", "d1", "--wait", "--json"])

    assert result.exit_code == 4, result.output  # rejected
    [mail] = smtp_server.sink.messages
    assert mail.recipients == ["it-team@d1.example"]
    assert "roster file rejected" in mail.message["Subject"]
