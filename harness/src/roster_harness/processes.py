"""Our services as real processes: free ports, a clean environment, a log file per process, waiting until
a process answers (failing at once, with the end of its log, when it died), and stopping them all."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import TracebackType

BIN = Path(sys.executable).parent
"""Where the venv's console scripts are (`roster-api`, `sso-gateway`, `clever-sim`, `demo-frontend`)."""

SERVICE_PREFIXES = ("ROSTER_", "SSO_", "DEMO_")
# never through a proxy: every URL waited on is on this machine
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class StartError(RuntimeError):
    """A process died or did not answer in time; the message ends with the tail of its log."""


def free_ports(count: int) -> list[int]:
    """`count` distinct ports on 127.0.0.1 that were free a moment ago (all bound at once, so distinct)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    return free_ports(1)[0]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any service setting (`ROSTER_*`, `SSO_*`, `DEMO_*`): a
    `ROSTER_DATABASE_URL` in the caller's shell must never reach a service started here. Plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SERVICE_PREFIXES)}
    return {**env, **extra}


def answers(url: str) -> bool:
    """Whether a GET of `url` is answered with 200 right now."""
    try:
        with _OPENER.open(url, timeout=2) as response:
            return int(response.status) == 200
    except (OSError, http.client.HTTPException):  # refused, reset, timed out, 503 while starting
        return False


def listens(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class Service:
    """One started process, its log file, its base URL (an HTTP server's) and the URL that answers 200
    once it is up."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    url: str = ""
    health: str | None = None

    def tail(self, lines: int = 30) -> str:
        if not self.log.exists():
            return ""
        text = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join("    " + line for line in text[-lines:])

    def died(self) -> StartError | None:
        if self.proc.poll() is None:
            return None
        return StartError(
            f"{self.name} exited with {self.proc.returncode}; the end of {self.log}:\n{self.tail()}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (what uvicorn and our CLIs shut down on), then SIGKILL after `timeout` seconds."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            print(f"[harness] {self.name} did not stop in {timeout:.1f} s; killing it", file=sys.stderr)
            self.proc.kill()
            self.proc.wait()


@dataclass
class Processes:
    """The processes one test, bench or demo starts, stopped together (last started first) on `stop()`
    or on leaving the `with` block. Each logs to `<log_dir>/<name>.log`. A wait fails as soon as any of
    them has died, with the end of that one's log."""

    log_dir: Path
    ready_timeout: float = 60.0  # a loaded 2-core CI machine starts a process in seconds, not ms
    stop_timeout: float = 10.0
    services: dict[str, Service] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Service:
        return self.services[name]

    def __iter__(self) -> Iterator[Service]:
        return iter(list(self.services.values()))

    def start(
        self,
        name: str,
        command: Sequence[str | os.PathLike[str]],
        *,
        env: Mapping[str, str],
        url: str = "",
        health: str | None = None,
        log: Path | None = None,
        cwd: Path | None = None,
        new_session: bool = False,
    ) -> Service:
        """Starts `command` with exactly `env`, stdout and stderr appended to `log` (default
        `<log_dir>/<name>.log`), without waiting for it: start several, then `wait_up()` for all.
        `new_session`: Ctrl-C in the caller's terminal does not reach it (the caller stops it in order)."""
        if name in self.services and self.services[name].proc.poll() is None:
            raise ValueError(f"{name} is already running")
        log = log or self.log_dir / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [os.fspath(part) for part in command],
                env=dict(env),
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=new_session,
            )
        self.services[name] = Service(name, proc, log, url, health)
        return self.services[name]

    def serve(
        self,
        name: str,
        command: Sequence[str | os.PathLike[str]],
        *,
        env: Mapping[str, str],
        health: str,
        url: str = "",
        cwd: Path | None = None,
        new_session: bool = False,
    ) -> Service:
        """Starts one process and waits until `health` answers 200."""
        service = self.start(name, command, env=env, url=url, health=health, cwd=cwd, new_session=new_session)
        self.wait_up(service.name)
        return service

    def check_alive(self) -> None:
        for service in self:
            error = service.died()
            if error is not None:
                raise error

    def wait_up(self, *names: str) -> None:
        """Waits until the health URL of each named service (default: every one that has one) answers."""
        waiting: Iterable[Service] = [self.services[n] for n in names] if names else list(self)
        for service in waiting:
            if service.health is not None:
                self._wait(service, f"{service.health} to answer 200", partial(answers, service.health))

    def wait_listening(self, name: str, host: str, port: int) -> None:
        """For a server that speaks no HTTP (the SFTP intake): waits until it accepts a connection."""
        self._wait(self.services[name], f"{host}:{port} to accept", lambda: listens(host, port))

    def _wait(self, service: Service, what: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            self.check_alive()
            if ready():
                return
            if time.monotonic() > deadline:
                raise StartError(
                    f"{service.name}: waited {self.ready_timeout:.0f} s for {what}; the end of "
                    f"{service.log}:\n{service.tail()}"
                )
            time.sleep(0.1)

    def tails(self, lines: int = 10) -> str:
        return "\n".join(f"[{s.name}] {s.log}:\n{s.tail(lines)}" for s in self)

    def stop(self) -> None:
        """SIGTERM to every running process at once, last started first (a frontend goes before the
        services it calls), then waits for each; SIGKILL to any still running after `stop_timeout`."""
        services = list(reversed(list(self)))
        for service in services:
            if service.proc.poll() is None:
                service.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for service in services:
            service.stop(timeout=max(0.1, deadline - time.monotonic()))

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            if error is not None and not isinstance(error, KeyboardInterrupt) and self.services:
                print(f"[harness] logs after {kind.__name__ if kind else 'an error'}:", file=sys.stderr)
                print(self.tails(), file=sys.stderr)
        finally:
            self.stop()
