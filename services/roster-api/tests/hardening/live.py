"""Real roster-api processes for the hardening tests: `roster-api serve` (uvicorn) on a free port, and
`roster-api worker`, each logging to a file the privacy scan reads afterwards."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def env_for(database_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "ROSTER_DATABASE_URL": database_url,
        "ROSTER_DATA_DIR": str(data_dir),
        "ROSTER_RUN_SCHEDULER": "false",
        "ROSTER_LOG_LEVEL": "INFO",
        **extra,
    }


@dataclass
class Live:
    proc: subprocess.Popen[bytes]
    log: Path
    url: str = ""


def _wait_ready(url: str, live: Live) -> None:
    deadline = time.monotonic() + 90  # a loaded CI machine starts a process slowly
    while time.monotonic() < deadline:
        if live.proc.poll() is not None:
            raise AssertionError(
                f"roster-api exited with {live.proc.returncode}: {live.log.read_text()[-2000:]}"
            )
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"roster-api did not come up: {live.log.read_text()[-2000:]}")


def stop(live: Live) -> None:
    if live.proc.poll() is None:
        live.proc.send_signal(signal.SIGTERM)
        try:
            live.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            live.proc.kill()
            live.proc.wait()


def start_serve(env: dict[str, str], log: Path) -> Live:
    port = free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(BIN / "roster-api"), "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Live(proc, log, f"http://127.0.0.1:{port}")


@contextmanager
def serving(env: dict[str, str], logs: list[Path]) -> Iterator[list[Live]]:
    """`roster-api serve` processes on free ports (started together), ready when this yields."""
    servers = [start_serve(env, log) for log in logs]
    try:
        for server in servers:
            _wait_ready(server.url, server)
        yield servers
    finally:
        for server in servers:
            stop(server)


def worker(env: dict[str, str], log: Path) -> Live:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(BIN / "roster-api"), "worker"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    return Live(proc, log)


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(BIN / "roster-api"), *args], env=env, capture_output=True, timeout=60, check=True
    )
    return done.stdout.decode() + done.stderr.decode()
