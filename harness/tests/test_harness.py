"""The harness itself: a process that dies while it is waited for fails the wait at once with the end of
its log; one that never answers fails after the timeout; one that ignores SIGTERM is killed; a fresh
PostgreSQL database is migrated, used and dropped."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import psycopg
import pytest

from roster_harness import Processes, StartError, clean_env, free_ports, fresh_database

PYTHON = sys.executable


def _wait_for_line(log: Path, line: str) -> None:
    deadline = time.monotonic() + 30
    while not (log.exists() and line in log.read_text()):
        assert time.monotonic() < deadline, f"{log} has no {line!r}"
        time.sleep(0.05)


def test_free_ports_are_distinct() -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5
    assert all(1024 <= port <= 65535 for port in ports)


def test_clean_env_drops_every_service_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROSTER_DATABASE_URL", "postgresql://prod/roster")
    monkeypatch.setenv("SSO_ISSUER", "https://sso.example")
    monkeypatch.setenv("DEMO_PRODUCT", "rocketlit")
    env = clean_env(ROSTER_DATA_DIR="var/data")
    assert not [key for key in env if key.startswith(("SSO_", "DEMO_"))]
    assert [key for key in env if key.startswith("ROSTER_")] == ["ROSTER_DATA_DIR"]
    assert env["PATH"]


def test_a_server_is_waited_for_and_stopped(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    with Processes(tmp_path) as processes:
        server = processes.serve(
            "http",
            [PYTHON, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
            env=clean_env(),
            health=f"http://127.0.0.1:{port}/",
        )
        assert server.proc.poll() is None
    assert server.proc.returncode is not None
    assert "GET / HTTP" in server.log.read_text()


def test_a_process_that_dies_fails_the_wait_at_once_with_its_log(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    crash = "import sys; print('settings refused: SSO_ISSUER is missing'); sys.exit(3)"
    with Processes(tmp_path, ready_timeout=60) as processes:
        processes.start("gateway", [PYTHON, "-c", crash], env=clean_env(), health=f"http://127.0.0.1:{port}/")
        started = time.monotonic()
        with pytest.raises(StartError) as failed:
            processes.wait_up()
    assert time.monotonic() - started < 10  # not the 60 s timeout
    assert "gateway exited with 3" in str(failed.value)
    assert "settings refused: SSO_ISSUER is missing" in str(failed.value)


def test_a_process_that_never_answers_fails_after_the_timeout(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    quiet = "import time; print('starting slowly', flush=True); time.sleep(60)"
    health = f"http://127.0.0.1:{port}/"
    with Processes(tmp_path, ready_timeout=1) as processes:
        sleeper = processes.start("slow", [PYTHON, "-c", quiet], env=clean_env(), health=health)
        _wait_for_line(sleeper.log, "starting slowly")
        with pytest.raises(StartError, match=rf"slow: waited 1 s for {health} to answer 200") as failed:
            processes.wait_up()
        assert "starting slowly" in str(failed.value)
    assert sleeper.proc.returncode is not None  # stopped on leaving the block


def test_a_process_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
        "time.sleep(60)"
    )
    processes = Processes(tmp_path, stop_timeout=1)
    service = processes.start("stubborn", [PYTHON, "-c", stubborn], env=clean_env())
    _wait_for_line(service.log, "ready")  # SIGTERM is ignored from here on
    processes.stop()
    assert service.proc.returncode == -9


@pytest.mark.postgres
def test_a_fresh_database_is_migrated_and_dropped(pg_admin_url: str) -> None:
    migrated: list[str] = []

    def migrate(url: str) -> None:
        migrated.append(url)
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
            conn.execute("CREATE TABLE marker (id int)")

    with fresh_database(pg_admin_url, prefix="harness_test", migrate=migrate) as database:
        assert migrated == [database.sqlalchemy_url]
        assert database.name.startswith("harness_test_")
        # still open when the database is dropped: the drop does not wait for it
        held = psycopg.connect(database.libpq_url)
        assert held.execute("SELECT count(*) FROM marker").fetchone() == (0,)
    held.close()
    with psycopg.connect(database.libpq_url.rsplit("/", 1)[0] + "/postgres") as admin:
        left = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database.name,)).fetchone()
    assert left is None
