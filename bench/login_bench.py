"""Full login throughput on loopback: frontend authorize -> sso-gateway -> Clever simulator -> callback ->
roster-api resolve -> code -> token, with each service as its own process (one uvicorn worker each), as
logins per second, plus the gateway's own share of the time per login: its request time minus the time it
waited for Clever and roster-api (from its /metrics; on a saturated machine the waits include time queued
on the gateway's own event loop), and the CPU each service spent per login (psutil), which does not
depend on what else the machine is doing.

`python -m bench login [--quick] [--logins N] [--concurrency C] [--database-url URL]`"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
DISTRICT = "6202763c8243d2100123dae5"
WEB_SECRET = "bench-frontend-secret-0123456789"
REDIRECT = "http://rocketlit.bench/cb"
GATEWAY_ROUTES = ("/authorize", "/callback/clever/{product_name}", "/token")


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _clever_id(n: int) -> str:
    return f"{0xB0000000 + n:024x}"


def _seed(database_url: str, students: int) -> str:
    """Migrates the database, rosters `students` students with RocketLit accounts, returns a resolve key."""
    from roster_api.auth import create_api_key
    from roster_api.db import make_engine, migrate, session_scope
    from roster_api.models import Account, District, License, Person

    migrate(database_url)
    engine = make_engine(database_url)
    try:
        with session_scope(engine) as s:
            s.add(District(id="bench-usd", name="Bench USD", clever_district_id=DISTRICT))
            s.flush()
            s.add(License(district_id="bench-usd", product="rocketlit", seats=students))
            for n in range(students):
                pid = f"p_{n:08d}"
                s.add(
                    Person(
                        district_id="bench-usd", id=pid, role="student", clever_id=_clever_id(n),
                        clever_id_source="roster", first_name="Student", last_name=str(n), grade="5",
                    )
                )  # fmt: skip
                s.add(
                    Account(
                        district_id="bench-usd",
                        person_id=pid,
                        product="rocketlit",
                        account_id=f"acct_{n:020d}",
                    )
                )
            _, key = create_api_key(session=s, name="sso-gateway-bench", scopes=["resolve"], district_id=None)
    finally:
        engine.dispose()
    return key


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited: {log.read_text()[-1500:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up: {log.read_text()[-1500:]}")


def _cpu(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def _metric_sums(text: str) -> dict[str, float]:
    sums: dict[str, float] = {"gateway": 0.0, "upstream": 0.0, "clever": 0.0, "roster-api": 0.0}
    for line in text.splitlines():
        m = re.match(r'http_request_duration_seconds_sum\{method="\w+",route="([^"]+)"\} (\S+)', line)
        if m and m.group(1) in GATEWAY_ROUTES:
            sums["gateway"] += float(m.group(2))
        m = re.match(r'sso_upstream_seconds_sum\{upstream="([^"]+)"\} (\S+)', line)
        if m:
            sums["upstream"] += float(m.group(2))
            sums[m.group(1)] = float(m.group(2))
    return sums


async def _one_login(browser: httpx.AsyncClient, gateway: str, n: int) -> float:
    """One person's whole login in a fresh cookie jar (the client is reused only for its connections)."""
    browser.cookies.clear()
    started = time.perf_counter()
    first = await browser.get(
        f"{gateway}/authorize",
        params={"response_type": "code", "client_id": "rl-web", "redirect_uri": REDIRECT,
                "scope": "openid", "state": secrets.token_urlsafe(12), "nonce": "n"},
    )  # fmt: skip
    at_clever = await browser.get(first.headers["location"] + f"&login_as={_clever_id(n)}")
    back = await browser.get(at_clever.headers["location"])
    if back.status_code != 303 or not back.headers["location"].startswith(REDIRECT):
        page = await browser.get(gateway + back.headers["location"]) if back.status_code == 303 else back
        title = re.search(r"<h1>(.*?)</h1>", page.text)
        raise RuntimeError(
            f"login {n} failed: {page.status_code} {title.group(1) if title else page.text[:300]}"
        )
    code = parse_qs(urlsplit(back.headers["location"]).query)["code"][0]
    token = await browser.post(
        f"{gateway}/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
        auth=("rl-web", WEB_SECRET),
    )
    if token.status_code != 200:
        raise RuntimeError(f"token {n} failed: {token.status_code} {token.text[:300]}")
    return time.perf_counter() - started


async def _drive(gateway: str, logins: int, concurrency: int, students: int) -> list[float]:
    queue = list(range(logins))
    latencies: list[float] = []

    async def worker() -> None:
        async with httpx.AsyncClient(timeout=30) as browser:
            while queue:
                n = queue.pop()
                latencies.append(await _one_login(browser, gateway, n % students))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


HELLO_REQUESTS = 3000


async def _hello_calls(url: str, requests: int, concurrency: int) -> None:
    async with httpx.AsyncClient(timeout=15) as client:
        remaining = list(range(requests))

        async def worker() -> None:
            while remaining:
                remaining.pop()
                response = await client.get(url)
                response.raise_for_status()

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def hello_cpu_per_request(work: Path, concurrency: int) -> float:
    """The baseline of this run: CPU seconds per request of a hello-world FastAPI app served the way
    the resolve benchmark serves it (one uvicorn worker, uvloop, httptools, no access log)."""
    from bench.resolve_bench import serve

    with serve(
        "bench.hello_app:app", env=dict(os.environ), factory=False, log=work / "hello.log", health="/hello"
    ) as (
        port,
        proc,
    ):
        url = f"http://127.0.0.1:{port}/hello"
        asyncio.run(_hello_calls(url, 200, concurrency))  # warm-up
        before = sum(proc.cpu_times()[:2])
        asyncio.run(_hello_calls(url, HELLO_REQUESTS, concurrency))
        return float(sum(proc.cpu_times()[:2]) - before) / HELLO_REQUESTS


def run(quick: bool, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench login")
    parser.add_argument("--logins", type=int, default=60 if quick else 1000)
    parser.add_argument("--concurrency", type=int, default=4 if quick else 8)
    parser.add_argument(
        "--database-url", default=None, help="roster-api database (default: SQLite in a temp dir)"
    )
    args, _ = parser.parse_known_args(argv)
    students = min(args.logins, 500)

    with tempfile.TemporaryDirectory(prefix="login-bench-") as tmp:
        work = Path(tmp)
        database_url = args.database_url or f"sqlite:///{work / 'roster.db'}"
        key = _seed(database_url, students)
        roster_port, gateway_port, clever_port = _free_ports(3)
        roster, gateway, clever = (f"http://127.0.0.1:{p}" for p in (roster_port, gateway_port, clever_port))
        sim = {
            "districts": [{"id": DISTRICT, "name": "Bench USD"}],
            "users": [{"id": _clever_id(n), "district": DISTRICT, "role": "student", "first_name": "Student",
                       "last_name": str(n)} for n in range(students)],
            "apps": [{"client_id": "rl-clever", "client_secret": "rl-clever-secret", "name": "RocketLit",
                      "redirect_uris": [f"{gateway}/callback/clever/rocketlit"]}],
        }  # fmt: skip
        (work / "sim.json").write_text(json.dumps(sim))
        base = {k: v for k, v in os.environ.items() if not k.startswith(("ROSTER_", "SSO_"))}
        envs = {
            "roster-api": {**base, "ROSTER_DATABASE_URL": database_url, "ROSTER_RUN_WORKER": "false",
                           "ROSTER_RUN_SCHEDULER": "false", "ROSTER_LOG_LEVEL": "WARNING",
                           "ROSTER_DATA_DIR": str(work / "roster")},
            "clever-sim": base,
            "sso-gateway": {
                **base, "SSO_ENVIRONMENT": "development", "SSO_ISSUER": gateway, "SSO_LOG_LEVEL": "WARNING",
                "SSO_DATA_DIR": str(work / "gateway"),
                "SSO_CLEVER_AUTHORIZE_URL": f"{clever}/oauth/authorize",
                "SSO_CLEVER_TOKEN_URL": f"{clever}/oauth/tokens", "SSO_CLEVER_API_URL": clever,
                "SSO_ROSTER_API_URL": roster,
                # a saturated 2-core box can queue a call past the 5 s default; the bench measures, not fails
                "SSO_CLEVER_TIMEOUT_SECONDS": "15", "SSO_ROSTER_API_TIMEOUT_SECONDS": "15",
                "SSO_ROSTER_API_KEY": key,
                "SSO_ROCKETLIT__DISPLAY_NAME": "RocketLit", "SSO_ROCKETLIT__CLEVER_CLIENT_ID": "rl-clever",
                "SSO_ROCKETLIT__CLEVER_CLIENT_SECRET": "rl-clever-secret",
                "SSO_ROCKETLIT__CLEVER_REDIRECT_URI": f"{gateway}/callback/clever/rocketlit",
                "SSO_ROCKETLIT__CLIENTS": json.dumps(
                    [{"client_id": "rl-web", "client_secret": WEB_SECRET, "redirect_uris": [REDIRECT]}]
                ),
            },
        }  # fmt: skip
        commands = {
            "roster-api": [BIN / "roster-api", "serve", "--port", str(roster_port)],
            "clever-sim": [
                BIN / "clever-sim",
                "serve",
                "--port",
                str(clever_port),
                "--config",
                work / "sim.json",
            ],
            "sso-gateway": [BIN / "sso-gateway", "serve", "--port", str(gateway_port)],
        }
        ready = {
            "roster-api": f"{roster}/readyz",
            "clever-sim": f"{clever}/",
            "sso-gateway": f"{gateway}/readyz",
        }
        procs: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for name, cmd in commands.items():
                log = work / f"{name}.log"
                with log.open("wb") as out:
                    procs[name] = subprocess.Popen(
                        [str(c) for c in cmd], env=envs[name], stdout=out, stderr=subprocess.STDOUT
                    )
                _wait(ready[name], procs[name], log)
            asyncio.run(_drive(gateway, min(20, args.logins), 2, students))  # warm-up
            before = _metric_sums(httpx.get(f"{gateway}/metrics").text)
            cpu_before = {name: _cpu(proc.pid) for name, proc in procs.items()}
            started = time.perf_counter()
            latencies = asyncio.run(_drive(gateway, args.logins, args.concurrency, students))
            wall = time.perf_counter() - started
            cpu = {name: (_cpu(proc.pid) - cpu_before[name]) / args.logins for name, proc in procs.items()}
            after = _metric_sums(httpx.get(f"{gateway}/metrics").text)
        except Exception:
            for name in procs:
                tail = (work / f"{name}.log").read_text(errors="replace").splitlines()[-5:]
                print(f"[login] {name} log tail:", *tail, sep="\n  ", file=sys.stderr)
            raise
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs.values():
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()

        hello_cpu = hello_cpu_per_request(work, args.concurrency)

    gateway_total = (after["gateway"] - before["gateway"]) / args.logins
    upstream = (after["upstream"] - before["upstream"]) / args.logins
    own = max(0.0, gateway_total - upstream)
    latencies.sort()
    result: dict[str, Any] = {
        "logins": args.logins,
        "concurrency": args.concurrency,
        "database": "postgresql" if database_url.startswith("postgres") else "sqlite",
        "logins_per_second": round(args.logins / wall, 1),
        "login_latency_ms_p50": round(statistics.median(latencies) * 1000, 1),
        "login_latency_ms_p95": round(latencies[int(len(latencies) * 0.95) - 1] * 1000, 1),
        "gateway_ms_per_login": round(gateway_total * 1000, 2),
        "gateway_waiting_on_clever_ms_per_login": round(
            (after["clever"] - before["clever"]) / args.logins * 1000, 2
        ),
        "gateway_waiting_on_roster_api_ms_per_login": round(
            (after["roster-api"] - before["roster-api"]) / args.logins * 1000, 2
        ),
        "gateway_own_ms_per_login": round(own * 1000, 2),
        "gateway_own_share_of_login_latency": round(own / statistics.mean(latencies), 3),
        # CPU per login is the load-independent measure on a shared machine
        "cpu_ms_per_login": {name: round(seconds * 1000, 2) for name, seconds in cpu.items()},
        "gateway_share_of_service_cpu": round(cpu["sso-gateway"] / sum(cpu.values()), 3),
        # the same CPU as multiples of a hello-world request's, measured in this run (targets: gateway
        # <= 30x, roster-api <= 15x)
        "hello_world_cpu_us_per_request": round(hello_cpu * 1e6, 1),
        "cpu_per_login_in_hello_world_requests": {
            name: round(seconds / hello_cpu, 1) for name, seconds in cpu.items()
        },
    }
    print("[login] " + ", ".join(f"{k}={v}" for k, v in result.items()))
    out_dir = ROOT / "bench-results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "login.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0
