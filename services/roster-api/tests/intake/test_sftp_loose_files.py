"""Clever's loose files uploaded one by one over SFTP (the real asyncssh server and client) are imported
as one package once the set is complete and quiet; an incomplete set gets a results file naming what is
missing; nothing is imported twice."""

from __future__ import annotations

import asyncio
import io
import time
import zipfile
from typing import Any

import pytest
from sqlmodel import Session, select

from roster_api.intake.loose_files import PACKAGE_NAME, REQUIRED
from roster_api.jobs.worker import ImportWorker
from roster_api.models import ImportRun
from roster_api.settings import Settings

from ..importing.formats.helpers import files_of
from .conftest import SftpEnv, StartIntake

QUIET = 0.5
CLEVER = files_of("clever2")


@pytest.fixture
def loose_settings(sftp_settings: Settings) -> Settings:
    return sftp_settings.model_copy(update={"sftp_loose_quiet_seconds": QUIET})


async def _put(env: SftpEnv, files: dict[str, bytes]) -> None:
    async with await env.connect() as conn, conn.start_sftp_client() as sftp:
        for name, data in files.items():
            async with sftp.open(name, "wb") as remote:
                await remote.write(data)


async def _next_pass(env: SftpEnv) -> None:
    """Waits until the watcher has packed or reported something."""
    event = env.intake.loose.changed
    await asyncio.wait_for(event.wait(), 5 * QUIET + 2)
    event.clear()


def _results(env: SftpEnv) -> list[str]:
    folder = env.folder() / "results"
    return [p.read_text() for p in sorted(folder.glob("clever-files.*.txt"))]


def _loose_left(env: SftpEnv) -> list[str]:
    return sorted(p.name for p in env.folder().iterdir() if p.name in CLEVER)


async def test_a_complete_set_is_imported_once_as_a_clever_package(
    start_intake: StartIntake, loose_settings: Settings
) -> None:
    env = await start_intake(settings=loose_settings, enqueue=None)
    await _put(env, CLEVER)
    await _next_pass(env)
    worker = ImportWorker(engine=env.engine, settings=env.settings)
    runs: list[Any] = await asyncio.to_thread(worker.run_until_idle)
    assert [(r.status, r.source, r.filename) for r in runs] == [("applied", "sftp", PACKAGE_NAME)]
    with Session(env.engine) as session:
        run = session.exec(select(ImportRun)).one()
        assert run.report["format"] == "clever", run.report.get("format")
    assert _loose_left(env) == []
    assert (env.folder() / PACKAGE_NAME).is_file()
    # nothing is left to import a second time
    await asyncio.sleep(3 * QUIET)
    assert await asyncio.to_thread(worker.run_until_idle) == []
    assert env.intake.loose.folders == {}


async def test_a_file_uploaded_again_during_the_quiet_period_restarts_it(
    start_intake: StartIntake, loose_settings: Settings
) -> None:
    env = await start_intake(settings=loose_settings)
    newer = CLEVER["students.csv"] + b"\n"
    async with await env.connect() as conn, conn.start_sftp_client() as sftp:
        for name, data in CLEVER.items():
            async with sftp.open(name, "wb") as remote:
                await remote.write(data)
        await asyncio.sleep(QUIET / 2)
        async with sftp.open("students.csv", "wb") as remote:
            await remote.write(newer)
        again = time.monotonic()
        assert env.recorder.calls == []
    await _next_pass(env)
    assert time.monotonic() - again >= QUIET
    assert len(env.recorder.calls) == 1
    call = env.recorder.calls[0]
    assert (call["filename"], call["source"]) == (PACKAGE_NAME, "sftp")
    with zipfile.ZipFile(io.BytesIO(call["content"])) as package:
        assert sorted(package.namelist()) == sorted(CLEVER)
        assert package.read("students.csv") == newer


async def test_an_incomplete_set_names_the_missing_files_then_completes(
    start_intake: StartIntake, loose_settings: Settings
) -> None:
    env = await start_intake(settings=loose_settings)
    partial = {n: d for n, d in CLEVER.items() if n not in {"students.csv", "sections.csv"}}
    await _put(env, partial)
    await _next_pass(env)
    assert env.recorder.calls == []
    [text] = _results(env)
    assert text.startswith("INCOMPLETE: nothing was imported.")
    assert "Missing: students.csv, sections.csv" in text
    assert _loose_left(env) == sorted(partial)
    async with await env.connect() as conn, conn.start_sftp_client() as sftp:
        assert any(name.startswith("clever-files.") for name in await sftp.listdir("results"))

    await _put(env, {"students.csv": CLEVER["students.csv"], "sections.csv": CLEVER["sections.csv"]})
    await _next_pass(env)
    assert len(env.recorder.calls) == 1
    assert _loose_left(env) == []
    await asyncio.sleep(3 * QUIET)
    assert len(env.recorder.calls) == 1
    assert len(_results(env)) == 1  # the incomplete set was reported once


async def test_a_v1_roster_named_like_a_clever_file_is_imported_at_once(
    start_intake: StartIntake, loose_settings: Settings
) -> None:
    env = await start_intake(settings=loose_settings)
    v1 = b"school_id,school_name,class_id,class_name,teacher_email,student_first_name\n"
    await _put(env, {"students.csv": v1})
    assert [c["filename"] for c in env.recorder.calls] == ["students.csv"]
    assert env.intake.loose.folders == {}


async def test_an_upload_in_progress_holds_the_set(
    start_intake: StartIntake, loose_settings: Settings
) -> None:
    env = await start_intake(settings=loose_settings)
    async with await env.connect() as conn, conn.start_sftp_client() as sftp:
        for name, data in CLEVER.items():
            if name != "students.csv":
                async with sftp.open(name, "wb") as done:
                    await done.write(data)
        remote = await sftp.open("students.csv", "wb")
        await remote.write(CLEVER["students.csv"][:100])
        await asyncio.sleep(2 * QUIET)
        assert _results(env) == []
        assert env.recorder.calls == []
        await remote.write(CLEVER["students.csv"][100:])
        await remote.close()
    await _next_pass(env)
    assert len(env.recorder.calls) == 1
    assert REQUIRED[1] in zipfile.ZipFile(io.BytesIO(env.recorder.calls[0]["content"])).namelist()


async def test_a_set_left_by_an_earlier_server_is_imported_after_a_restart(
    start_intake: StartIntake, loose_settings: Settings
) -> None:
    first = await start_intake(settings=loose_settings)
    await first.intake.stop()
    first.folder().mkdir(parents=True, exist_ok=True)
    for name, data in CLEVER.items():
        (first.folder() / name).write_bytes(data)
    env = await start_intake(settings=loose_settings)
    await _next_pass(env)
    assert [c["filename"] for c in env.recorder.calls] == [PACKAGE_NAME]
    assert _loose_left(env) == []
