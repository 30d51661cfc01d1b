"""Resolve throughput against a hello-world baseline measured in the same run.

    python -m bench resolve [--quick] [--students N] [--duration S] [--connections C] [--rounds R]
                            [--log-level INFO|WARNING]

What it does, in order:
1. creates a fresh PostgreSQL database (`roster_bench_<random>`, dropped at the end), migrates it, and
   seeds one district of N students (170,000 by default; 2,000 with --quick) straight into the tables
   with COPY: schools, teachers, classes, ~6 enrollments per student, one account per person and product;
2. starts roster-api and a hello-world FastAPI app, each as ONE uvicorn worker with the same options
   (uvloop, httptools, no access log), roster-api as deployed (ROSTER_ENVIRONMENT=production, INFO
   logging, the async psycopg pool) except that the per-key rate limit is off so it does not cap the
   measurement;
3. drives each with wrk (same machine, 32 connections): GET /hello, and POST /v1/resolve for real
   students' Clever IDs taken round-robin (Lua script), after a warm-up of each;
4. checks every resolve call was recorded as a login attempt, and prints requests/s, latency
   percentiles, the ratio and whether the targets hold (resolve >= 40 % of hello-world rps, p99 <= 25 ms).

Needs `wrk` (Debian: `apt-get install -y wrk`) and PostgreSQL at ROSTER_BENCH_POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432/postgres)."""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import psycopg

from roster_harness import Database, Processes, clean_env, free_port, uvicorn_command
from roster_harness import fresh_database as harness_database

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("ROSTER_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
CLEVER_DISTRICT = "5b2c7e1f9a3d4c6e8f0a1b2c"
TARGET_RATIO = 0.40
TARGET_P99_MS = 25.0

LUA = """
local ids = {%(ids)s}
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"
request = function()
  i = i + 1
  local body = '{"product":"rocketlit","clever_user_id":"' .. ids[(i %% #ids) + 1] ..
    '","clever_district_id":"%(district)s","email":null,"clever_role":"student"}'
  return wrk.format(nil, "/v1/resolve", nil, body)
end
"""

# wrk prints this JSON line at the end (latency in microseconds)
DONE_LUA = """
done = function(summary, latency, requests)
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "non2xx": %d, "errors": %d, ' ..
    '"p50": %d, "p90": %d, "p99": %d, "max": %d}\\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


@dataclass
class Result:
    name: str
    requests: int
    seconds: float
    non2xx: int
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    # CPU seconds the server process used during the run: per request, this does not depend on what
    # else the machine is doing, unlike requests/s on a shared machine
    server_cpu: float = 0.0

    @property
    def cpu_us(self) -> float:
        return self.server_cpu / self.requests * 1e6 if self.requests else 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        return (
            f"{self.name:<12} {self.rps:>9.0f} req/s  p50 {self.p50_ms:6.2f} ms  p90 {self.p90_ms:6.2f} ms  "
            f"p99 {self.p99_ms:6.2f} ms  max {self.max_ms:7.2f} ms  ({self.requests} requests, "
            f"{self.non2xx} non-2xx, {self.errors} socket errors; server CPU {self.cpu_us:.0f} us/request)"
        )


@contextmanager
def fresh_database() -> Iterator[Database]:
    """A migrated database `roster_bench_<random>` at ROSTER_BENCH_POSTGRES_URL's server, dropped after."""
    from roster_api.db import migrate

    with harness_database(PG_URL, prefix="roster_bench", migrate=migrate) as database:
        yield database


def seed(database: Database, students: int, seed_value: int = 1) -> tuple[list[str], str]:
    """One district shaped like the 170k-student one of roster_gen (about 708 students, 35 teachers and
    175 classes per school, 6 classes per student). Returns some students' Clever IDs and an API key."""
    from roster_api.auth import create_api_key
    from roster_api.db import make_engine, session_scope
    from roster_api.models import District, License

    url = database.libpq_url
    engine = make_engine(database.sqlalchemy_url)
    with session_scope(engine) as session:
        session.add(District(id="bench-usd", name="Bench USD", clever_district_id=CLEVER_DISTRICT))
        session.flush()
        session.add(License(district_id="bench-usd", product="rocketlit", seats=students))
        session.add(License(district_id="bench-usd", product="innerorbit", seats=students))
        _, key = create_api_key(session=session, name="bench-gateway", scopes=["resolve"], district_id=None)
    engine.dispose()

    rng = random.Random(seed_value)
    now = datetime.now(UTC)
    district = "bench-usd"
    schools = max(1, round(students / 708))
    classes_per_school = 175
    teachers_per_school = 35
    grades = [str(g) for g in range(1, 13)]
    clever_ids: list[str] = []
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY school (district_id, school_id, name, active, created_at, updated_at) FROM STDIN"
        ) as cp:
            for s in range(schools):
                cp.write_row((district, f"sch-{s:04d}", f"School {s}", True, now, now))
        with cur.copy(
            "COPY section (district_id, class_id, school_id, name, active, created_at, updated_at) FROM STDIN"
        ) as cp:
            for s in range(schools):
                for c in range(classes_per_school):
                    cp.write_row(
                        (district, f"cls-{s:04d}-{c:03d}", f"sch-{s:04d}", f"Class {c}", True, now, now)
                    )
        person_cols = (
            "district_id, id, role, clever_id, clever_id_source, email, first_name, last_name, grade, "
            "active, created_at, updated_at"
        )
        people: list[tuple[str, str, int]] = []  # (person_id, role, school)
        with cur.copy(f"COPY person ({person_cols}) FROM STDIN") as cp:
            n = 0
            for s in range(schools):
                for _ in range(teachers_per_school):
                    n += 1
                    pid = f"p_{secrets.token_hex(8)}"
                    people.append((pid, "teacher", s))
                    cp.write_row(
                        (
                            district,
                            pid,
                            "teacher",
                            f"{0x7E0000000000000000000000 + n:024x}",
                            "roster",
                            f"t{n}@bench.example",
                            "Tess",
                            f"Teacher{n}",
                            None,
                            True,
                            now,
                            now,
                        )
                    )
            for k in range(students):
                s = k % schools
                pid = f"p_{secrets.token_hex(8)}"
                clever = f"{0x5E0000000000000000000000 + k:024x}"
                clever_ids.append(clever)
                people.append((pid, "student", s))
                cp.write_row(
                    (
                        district,
                        pid,
                        "student",
                        clever,
                        "roster",
                        f"s{k}@bench.example",
                        "Sam",
                        f"Student{k}",
                        rng.choice(grades),
                        True,
                        now,
                        now,
                    )
                )
        with cur.copy("COPY section_teacher (district_id, class_id, person_id, active) FROM STDIN") as cp:
            by_school: dict[int, list[str]] = {}
            for pid, role, s in people:
                if role == "teacher":
                    by_school.setdefault(s, []).append(pid)
            for s, teachers in by_school.items():
                for c in range(classes_per_school):
                    cp.write_row((district, f"cls-{s:04d}-{c:03d}", teachers[c % len(teachers)], True))
        with cur.copy("COPY enrollment (district_id, class_id, person_id, active) FROM STDIN") as cp:
            for pid, role, s in people:
                if role == "student":
                    for c in rng.sample(range(classes_per_school), 6):
                        cp.write_row((district, f"cls-{s:04d}-{c:03d}", pid, True))
        with cur.copy(
            "COPY account (district_id, person_id, product, account_id, active, created_at, updated_at) "
            "FROM STDIN"
        ) as cp:
            for pid, _, _ in people:
                for product in ("rocketlit", "innerorbit"):
                    cp.write_row((district, pid, product, f"acct_{secrets.token_hex(12)}", True, now, now))
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    rng.shuffle(clever_ids)
    return clever_ids[: min(len(clever_ids), 5000)], key


@contextmanager
def serve(
    name: str, app: str, *, env: dict[str, str], factory: bool, work: Path, health: str
) -> Iterator[tuple[int, psutil.Process]]:
    """`app` as ONE uvicorn worker on a free port (its log: `work/<name>.log`), stopped on exit."""
    port = free_port()
    command = uvicorn_command(app, port=port, factory=factory)
    with Processes(work, stop_timeout=15) as processes:
        service = processes.serve(name, command, env=env, health=f"http://127.0.0.1:{port}{health}", cwd=ROOT)
        yield port, psutil.Process(service.proc.pid)


def wrk(
    name: str, *, url: str, script: Path, seconds: int, connections: int, server: psutil.Process
) -> Result:
    before = server.cpu_times()
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(script), url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("WRKJSON "))
    data: dict[str, Any] = json.loads(line.removeprefix("WRKJSON "))
    after = server.cpu_times()
    return Result(
        name=name,
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        non2xx=int(data["non2xx"]),
        errors=int(data["errors"]),
        p50_ms=data["p50"] / 1000,
        p90_ms=data["p90"] / 1000,
        p99_ms=data["p99"] / 1000,
        max_ms=data["max"] / 1000,
        server_cpu=(after.user + after.system) - (before.user + before.system),
    )


def count_attempts(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM login_attempt").fetchone()
    return int(row[0]) if row else 0


def run(quick: bool, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench resolve")
    parser.add_argument("--students", type=int, default=2_000 if quick else 170_000)
    parser.add_argument("--duration", type=int, default=5 if quick else 20, help="seconds per measurement")
    parser.add_argument("--warmup", type=int, default=2 if quick else 5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--rounds", type=int, default=1 if quick else 2, help="hello/resolve pairs, interleaved"
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        help="roster-api's ROSTER_LOG_LEVEL; INFO (the default, as in production) writes one access-log "
        "line per request",
    )
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("[resolve] needs wrk: apt-get install -y wrk", file=sys.stderr)
        return 1
    print(f"[resolve] seeding {args.students} students into a fresh PostgreSQL database ...", flush=True)
    started = time.monotonic()
    with fresh_database() as database, tempfile.TemporaryDirectory(prefix="resolve-bench-") as tmp:
        ids, key = seed(database, args.students)
        print(f"[resolve] seeded in {time.monotonic() - started:.0f} s", flush=True)
        work = Path(tmp)
        resolve_lua = work / "resolve.lua"
        resolve_lua.write_text(
            LUA % {"ids": ",".join(f'"{i}"' for i in ids), "key": key, "district": CLEVER_DISTRICT} + DONE_LUA
        )
        hello_lua = work / "hello.lua"
        hello_lua.write_text(DONE_LUA)
        base_env = clean_env()
        roster_env = {
            **base_env,
            "ROSTER_DATABASE_URL": database.sqlalchemy_url,
            "ROSTER_DATA_DIR": str(work / "data"),
            # as deployed (deploy/): production settings, which need a real pepper
            "ROSTER_ENVIRONMENT": "production",
            "ROSTER_HASH_PEPPER": secrets.token_urlsafe(24),
            "ROSTER_RUN_WORKER": "false",
            "ROSTER_RUN_SCHEDULER": "false",
            "ROSTER_RESOLVE_RATE_PER_SECOND": "0",
            "ROSTER_LOG_LEVEL": args.log_level,
        }
        hellos: list[Result] = []
        resolves: list[Result] = []
        sent = 0
        with (
            serve(
                "hello", "bench.hello_app:app", env=base_env, factory=False, work=work, health="/hello"
            ) as (hello_port, hello_proc),
            serve(
                "roster-api",
                "roster_api.main:create_app",
                env=roster_env,
                factory=True,
                work=work,
                health="/readyz",
            ) as (roster_port, roster_proc),  # fmt: skip
        ):
            hello = {
                "url": f"http://127.0.0.1:{hello_port}/hello",
                "script": hello_lua,
                "connections": args.connections,
                "server": hello_proc,
            }
            resolve = {
                "url": f"http://127.0.0.1:{roster_port}/v1/resolve",
                "script": resolve_lua,
                "connections": args.connections,
                "server": roster_proc,
            }
            wrk("warmup", seconds=args.warmup, **hello)
            sent += wrk("warmup", seconds=args.warmup, **resolve).requests
            for _ in range(args.rounds):
                hellos.append(wrk("hello-world", seconds=args.duration, **hello))
                print(hellos[-1].line(), flush=True)
                resolves.append(wrk("resolve", seconds=args.duration, **resolve))
                print(resolves[-1].line(), flush=True)
                sent += resolves[-1].requests
        recorded = count_attempts(database.libpq_url)
    hello_rps = sum(r.rps for r in hellos) / len(hellos)
    resolve_rps = sum(r.rps for r in resolves) / len(resolves)
    p99 = max(r.p99_ms for r in resolves)
    ratio = resolve_rps / hello_rps if hello_rps else 0.0
    failed = sum(r.non2xx + r.errors for r in resolves)
    # wrk stops counting at the deadline; calls in flight then still finish and are recorded
    all_recorded = sent <= recorded <= sent + 2 * args.connections * (args.rounds + 1)
    print(
        f"[resolve] {args.students} students, {args.connections} connections, log level {args.log_level}: "
        f"resolve {resolve_rps:.0f} req/s = "
        f"{ratio:.1%} of hello-world {hello_rps:.0f} req/s (target >= {TARGET_RATIO:.0%}); resolve p99 "
        f"{p99:.2f} ms (target <= {TARGET_P99_MS:.0f} ms); {recorded} attempts recorded for {sent} completed "
        f"calls; {failed} failed calls"
    )
    cpu_ratio = (sum(r.cpu_us for r in hellos) / len(hellos)) / (
        sum(r.cpu_us for r in resolves) / len(resolves)
    )
    print(
        f"[resolve] server CPU per request: hello-world {hellos[0].cpu_us:.0f} us, resolve "
        f"{resolves[0].cpu_us:.0f} us (first round); resolve needs {1 / cpu_ratio:.1f}x the CPU of "
        f"hello-world, i.e. {cpu_ratio:.1%} of its rate if the worker had a core to itself "
        "(PostgreSQL's CPU not counted)"
    )
    ok = ratio >= TARGET_RATIO and p99 <= TARGET_P99_MS and all_recorded and failed == 0
    print(f"[resolve] {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1
