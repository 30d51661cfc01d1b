"""SFTP intake end to end: how long a district waits for its answer.

    python -m bench.sftp_bench [--quick] [--students N]

In one process, on a fresh SQLite database under a temporary directory: the SFTP server on 127.0.0.1
port 0, the import worker polling every 0.1 s, and asyncssh's client. For a generated roster of N
students (2,000 by default, ~12,000 rows; 200 with --quick) it measures: login (Argon2id verify
included), the upload, and the time from the client's close to the result file being readable in
`results/` (queueing, parse, diff, apply and the result file), first for a new roster (applied), then
for the same bytes again (skipped)."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import asyncssh

from bench.roster_gen import generate
from roster_api.db import make_engine, migrate, session_scope
from roster_api.intake import credentials
from roster_api.intake.sftp import SftpIntake
from roster_api.jobs.worker import ImportWorker
from roster_api.models import District
from roster_api.settings import Settings


async def _wait_for_result(sftp: asyncssh.SFTPClient, known: set[str]) -> tuple[str, float]:
    started = time.perf_counter()
    while True:
        names = {n for n in await sftp.listdir("results") if n.endswith(".txt")} - known
        if names:
            return names.pop(), time.perf_counter() - started
        if time.perf_counter() - started > 600:
            raise TimeoutError("no result after 600 s")
        await asyncio.sleep(0.02)


async def _measure(root: Path, students: int) -> None:
    settings = Settings(
        database_url=f"sqlite:///{root / 'roster.db'}",
        data_dir=root / "data",
        worker_poll_seconds=0.1,
        log_level="WARNING",
        run_scheduler=False,
    )
    migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    with session_scope(engine) as session:
        district = District(id="bench", name="Bench USD")
        session.add(district)
        session.flush()
        credential, password = credentials.create_credential(
            session=session, district=district, password=True, public_keys=[], actor="bench"
        )
    assert password is not None
    roster = root / "roster.csv"
    counts = generate(roster, students=students, seed=1)
    size = roster.stat().st_size
    worker = ImportWorker(engine=engine, settings=settings)
    worker.start()
    intake = SftpIntake(settings=settings, engine=engine, host="127.0.0.1", port=0)
    await intake.start()
    try:
        t0 = time.perf_counter()
        async with (
            asyncssh.connect(
                "127.0.0.1",
                intake.port,
                username=credential.username,
                password=password,
                known_hosts=None,
                client_keys=None,
                agent_path=None,
                config=None,
            ) as conn,
            conn.start_sftp_client() as sftp,
        ):
            login = time.perf_counter() - t0
            print(f"roster: {counts['rows']} rows, {counts['students']} students, {size / 1e6:.1f} MB")
            print(f"login (ssh handshake + Argon2id):        {login * 1000:8.0f} ms")
            known: set[str] = set()
            for label in ("new roster (applied)", "same bytes (skipped)"):
                t1 = time.perf_counter()
                await sftp.put(str(roster), "roster.csv")
                upload = time.perf_counter() - t1
                name, waited = await _wait_for_result(sftp, known)
                known.add(name)
                async with sftp.open(f"results/{name}") as fh:
                    status = (await fh.read()).splitlines()[2]
                print(f"{label}: upload {upload * 1000:6.0f} ms ({size / 1e6 / upload:5.1f} MB/s), ", end="")
                print(f"close -> result readable {waited * 1000:6.0f} ms   [{status.strip()}]")
    finally:
        await intake.stop()
        worker.stop()
        engine.dispose()


def run(quick: bool = False, argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.sftp_bench", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--students", type=int, default=None)
    args = parser.parse_args(argv or [])
    students = args.students or (200 if quick or args.quick else 2000)
    with tempfile.TemporaryDirectory(prefix="sftp-bench-") as tmp:
        asyncio.run(_measure(Path(tmp), students))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(run(argv=sys.argv[1:]))
