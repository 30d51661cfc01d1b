"""Real roster-api processes for the hardening tests, started by the shared harness (roster_harness):
`roster-api serve` (uvicorn) on a free port, and `roster-api worker`, each logging to a file the privacy
scan reads afterwards."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from roster_harness import BIN, Processes, Service, clean_env, free_ports

READY_SECONDS = 90.0  # a loaded CI machine starts a process slowly


def env_for(database_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    return clean_env(
        ROSTER_DATABASE_URL=database_url,
        ROSTER_DATA_DIR=str(data_dir),
        ROSTER_RUN_SCHEDULER="false",
        ROSTER_LOG_LEVEL="INFO",
        **extra,
    )


@contextmanager
def serving(env: dict[str, str], logs: list[Path]) -> Iterator[list[Service]]:
    """`roster-api serve` processes on free ports (started together), ready when this yields; each
    `Service` has `.url` (its base URL), `.proc` and `.log`."""
    with Processes(logs[0].parent, ready_timeout=READY_SECONDS, stop_timeout=15) as processes:
        servers = []
        for log, port in zip(logs, free_ports(len(logs)), strict=True):
            url = f"http://127.0.0.1:{port}"
            command = [str(BIN / "roster-api"), "serve", "--port", str(port)]
            servers.append(
                processes.start(log.stem, command, env=env, url=url, health=f"{url}/readyz", log=log)
            )
        processes.wait_up()
        yield servers


def worker(env: dict[str, str], log: Path) -> Service:
    """`roster-api worker`, running until `stop(worker)`."""
    return Processes(log.parent).start("worker", [str(BIN / "roster-api"), "worker"], env=env, log=log)


def stop(service: Service) -> None:
    service.stop(timeout=15)


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(BIN / "roster-api"), *args], env=env, capture_output=True, timeout=60, check=True
    )
    return done.stdout.decode() + done.stderr.decode()
