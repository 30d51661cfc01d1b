"""`roster-api sftp` as a standalone process, and `roster-api nightly` as cron runs it."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import asyncssh
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from roster_api.cli import app
from roster_api.db import session_scope
from roster_api.intake import credentials
from roster_api.models import District
from roster_api.settings import Settings

ROSTER_API = str(Path(sys.executable).parent / "roster-api")


def _env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "ROSTER_DATABASE_URL": settings.database_url,
        "ROSTER_DATA_DIR": str(settings.data_dir),
        "ROSTER_SFTP_HOST": "127.0.0.1",
        "ROSTER_SFTP_PORT": "0",
    }


@pytest.fixture
def login(roster_engine: sa.Engine) -> tuple[str, str]:
    with session_scope(roster_engine) as session:
        district = District(id="d1", name="District One", import_on_upload=False)
        session.add(district)
        session.flush()
        credential, password = credentials.create_credential(
            session=session, district=district, password=True, public_keys=[], actor="test"
        )
    assert password is not None
    return credential.username, password


async def test_sftp_command_serves_until_sigterm(
    roster_settings: Settings, login: tuple[str, str], tmp_path: Path
) -> None:
    process = await asyncio.create_subprocess_exec(
        ROSTER_API, "sftp", env=_env(roster_settings), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL
    )
    assert process.stderr is not None
    try:
        port = None
        lines: list[str] = []
        while port is None:
            line = (await asyncio.wait_for(process.stderr.readline(), 30)).decode()
            assert line, "roster-api sftp exited early:\n" + "".join(lines)
            lines.append(line)
            found = re.search(r"SFTP intake listening on 127\.0\.0\.1:(\d+); host key (SHA256:\S+)", line)
            if found:
                port, fingerprint = int(found.group(1)), found.group(2)
        key = asyncssh.read_private_key(str(roster_settings.data_dir / "ssh_host_ed25519_key"))
        assert fingerprint == key.get_fingerprint("sha256")
        known = asyncssh.import_known_hosts(f"[127.0.0.1]:{port} {key.export_public_key().decode()}")
        (tmp_path / "r.csv").write_bytes(b"a,b\n")
        async with (
            asyncssh.connect(
                "127.0.0.1",
                port,
                username=login[0],
                password=login[1],
                known_hosts=known,
                client_keys=None,
                agent_path=None,
                config=None,
            ) as conn,
            conn.start_sftp_client() as sftp,
        ):
            await sftp.put(str(tmp_path / "r.csv"), "roster.csv")
        assert (roster_settings.data_dir / "sftp" / "d1" / "roster.csv").read_bytes() == b"a,b\n"
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_nightly_command_prints_one_line_per_district(
    roster_settings: Settings, roster_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with session_scope(roster_engine) as session:
        session.add(District(id="d1", name="One", timezone="UTC"))
        session.add(District(id="d2", name="Two", timezone="UTC"))
    folder = roster_settings.data_dir / "sftp" / "d1"
    folder.mkdir(parents=True)
    (folder / "roster.csv").write_text("school_id,school_name\n")
    for name, value in _env(roster_settings).items():
        if name.startswith("ROSTER_"):
            monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, ["nightly"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"d1 \d{4}-\d{2}-\d{2} queued imp_\w+", lines[0]), lines
    assert re.fullmatch(r"d2 \d{4}-\d{2}-\d{2} no_file \(no roster.csv in the SFTP folder\)", lines[1]), lines
    again = CliRunner().invoke(app, ["nightly", "--district", "d1"])
    assert again.exit_code == 0
    assert again.stdout.split()[2] == "already_done"


def test_nightly_command_refuses_an_unknown_district(
    roster_settings: Settings, roster_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in _env(roster_settings).items():
        if name.startswith("ROSTER_"):
            monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, ["nightly", "--district", "nope"])
    assert result.exit_code == 2
    assert "no such district: nope" in result.stderr
