"""A district uploads a OneRoster zip by SFTP (the real asyncssh server and client): it is imported like
a CSV, and the result file names the format. One of Clever's files sent alone under another name is
refused by name (Clever's own names wait for the whole set: intake/test_sftp_loose_files.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncssh
import sqlalchemy as sa

from roster_api.db import session_scope
from roster_api.intake import credentials
from roster_api.intake.sftp import SftpIntake
from roster_api.jobs.worker import ImportWorker
from roster_api.models import District, ImportRun
from roster_api.settings import Settings

from .helpers import DATA, files_of, zip_bytes


def _login(engine: sa.Engine) -> tuple[str, str]:
    with session_scope(engine) as session:
        session.add(District(id="d1", name="D1"))
        session.flush()
        district = session.get(District, "d1")
        assert district is not None
        credential, password = credentials.create_credential(
            session=session, district=district, password=True, public_keys=[], actor="test"
        )
    assert password is not None
    return credential.username, password


async def _upload(
    intake: SftpIntake, settings: Settings, login: tuple[str, str], files: dict[str, bytes]
) -> None:
    public = asyncssh.read_private_key(str(settings.data_dir / "ssh_host_ed25519_key"))
    known = asyncssh.import_known_hosts(
        f"[127.0.0.1]:{intake.port} {public.export_public_key('openssh').decode().strip()}\n"
    )
    async with (
        asyncssh.connect(
            "127.0.0.1",
            intake.port,
            username=login[0],
            password=login[1],
            known_hosts=known,
            client_keys=None,
            agent_path=None,
            config=None,
        ) as conn,
        conn.start_sftp_client() as sftp,
    ):
        for name, data in files.items():
            async with sftp.open(name, "wb") as remote:
                await remote.write(data)


async def test_a_oneroster_zip_by_sftp_is_imported(
    roster_engine: sa.Engine, roster_settings: Settings, tmp_path: Path
) -> None:
    login = _login(roster_engine)
    intake = SftpIntake(settings=roster_settings, engine=roster_engine, host="127.0.0.1", port=0)
    await intake.start()
    try:
        await _upload(intake, roster_settings, login, {"district.zip": zip_bytes(files_of("oneroster12"))})
        worker = ImportWorker(engine=roster_engine, settings=roster_settings)
        runs: list[Any] = await asyncio.to_thread(worker.run_until_idle)
        assert [(r.status, r.source) for r in runs] == [("applied", "sftp")]
        await _upload(
            intake, roster_settings, login, {"pupils.csv": (DATA / "clever2" / "students.csv").read_bytes()}
        )
        runs = await asyncio.to_thread(worker.run_until_idle)
        assert [r.status for r in runs] == ["rejected"]
    finally:
        await intake.stop()
    with session_scope(roster_engine) as session:
        applied = session.get(ImportRun, runs[0].id)
        assert applied is not None
        assert "Clever's students.csv" in applied.report["errors"][0]["message"]
