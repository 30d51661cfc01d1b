"""Preview over SFTP with the real asyncssh server and client and the real import worker (SQLite and
PostgreSQL): a file named `*.preview.csv` is a dry run; its results come back in `results/`, nothing is
applied, also when the district does not import on upload."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh
import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from roster_api.db import session_scope
from roster_api.intake import credentials
from roster_api.intake.sftp import SftpIntake
from roster_api.jobs.worker import ImportWorker
from roster_api.models import District, ImportRun, License
from roster_api.settings import Settings

from .import_rows import csv_bytes, student

ROSTER = [student(n) for n in range(1, 21)]


@pytest.fixture
async def sftp(roster_engine: sa.Engine, roster_settings: Settings) -> AsyncIterator[asyncssh.SFTPClient]:
    with session_scope(roster_engine) as session:
        district = District(id="d1", name="D1", import_on_upload=False)
        session.add(district)
        session.flush()
        session.add(License(district_id="d1", product="rocketlit", seats=100))
        credential, password = credentials.create_credential(
            session=session, district=district, password=True, public_keys=[], actor="test"
        )
        username = credential.username
    intake = SftpIntake(settings=roster_settings, engine=roster_engine, host="127.0.0.1", port=0)
    await intake.start()
    key = asyncssh.read_private_key(str(roster_settings.data_dir / "ssh_host_ed25519_key"))
    known = asyncssh.import_known_hosts(
        f"[127.0.0.1]:{intake.port} {key.export_public_key('openssh').decode().strip()}\n"
    )
    try:
        async with (
            asyncssh.connect(
                "127.0.0.1",
                intake.port,
                username=username,
                password=password,
                known_hosts=known,
                client_keys=None,
                agent_path=None,
                config=None,
            ) as conn,
            conn.start_sftp_client() as client,
        ):
            yield client
    finally:
        await intake.stop()


def active_students(engine: sa.Engine) -> int:
    query = sa.text("select count(*) from person where role = 'student' and active")
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def imports(engine: sa.Engine) -> list[ImportRun]:
    with Session(engine) as session:
        return list(session.exec(select(ImportRun)).all())


async def test_a_preview_file_is_checked_and_never_applied(
    sftp: asyncssh.SFTPClient, roster_engine: sa.Engine, roster_settings: Settings, tmp_path: Path
) -> None:
    local = tmp_path / "roster.csv"
    local.write_bytes(csv_bytes(ROSTER))
    await sftp.put(str(local), "roster.csv")  # imports on upload are off: kept, not imported
    assert imports(roster_engine) == []
    await sftp.put(str(local), "roster.preview.csv")
    worker = ImportWorker(engine=roster_engine, settings=roster_settings)
    worker.run_until_idle()
    [preview] = imports(roster_engine)
    assert (preview.source, preview.dry_run, preview.status) == ("sftp", True, "validated")
    assert preview.report["changes"]["students"]["created"] == 20
    assert active_students(roster_engine) == 0
    names = await sftp.listdir("results")
    text_name = next(n for n in names if n.startswith("roster.preview.csv.") and n.endswith(".txt"))
    async with sftp.open(f"results/{text_name}") as fh:
        text = await fh.read()
    assert preview.id in text
    assert "CHECKED" in text.upper()
    assert any(n.endswith(".changes.csv") for n in names)


async def test_a_binary_preview_gets_a_clear_results_file(
    sftp: asyncssh.SFTPClient, roster_engine: sa.Engine, roster_settings: Settings, tmp_path: Path
) -> None:
    local = tmp_path / "roster.xlsx.csv"
    local.write_bytes(b"PK\x03\x04\x00\x00binary\x00spreadsheet")
    await sftp.put(str(local), "export.preview.csv")
    ImportWorker(engine=roster_engine, settings=roster_settings).run_until_idle()
    [preview] = imports(roster_engine)
    assert (preview.dry_run, preview.status) == (True, "rejected")
    names = await sftp.listdir("results")
    text_name = next(n for n in names if n.startswith("export.preview.csv.") and n.endswith(".txt"))
    async with sftp.open(f"results/{text_name}") as fh:
        text = await fh.read()
    assert "REJECTED" in text.upper()
    assert active_students(roster_engine) == 0
