"""Server time of each district console page for a 170,000-student district on PostgreSQL.

    python -m bench console [--quick] [--students N] [--requests R]

1. creates a fresh PostgreSQL database and seeds one district as the resolve benchmark does (170,000
   students by default, 2,000 with --quick), plus one successful login for every second student, a
   failed one for every twentieth, and 50 imports (one with 200 errors and its changes counted);
2. signs in to the console as support, in process (roster-api's app over httpx's ASGI transport, no
   network), and requests each page R times (30 by default) after one warm-up request;
3. prints per page in milliseconds the first request, p50 and p95 (the overview's seat and login counts
   are the district's kept figures, counted once after seeding as the import worker does after an
   import; the time of that count is printed too), next to the same measurement of `GET /healthz` (the
   hello-world baseline of this harness), and whether every page's p95 is under the 150 ms target.

Needs PostgreSQL at ROSTER_BENCH_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres)."""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from bench.resolve_bench import CLEVER_DISTRICT, fresh_database, seed

TARGET_MS = 150.0
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def seed_console(url: str, students: int) -> None:
    """Login attempts and imports on top of the resolve benchmark's roster."""
    now = datetime.now(UTC)
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT id, clever_id FROM person WHERE district_id = 'bench-usd' AND role = 'student'")
        people = cur.fetchall()
        columns = (
            "reference, created_at, product, district_id, clever_district_id, clever_user_id, clever_role, "
            "outcome, reason, person_id, diagnosis"
        )
        with cur.copy(f"COPY login_attempt ({columns}) FROM STDIN") as cp:
            for n, (person_id, clever_id) in enumerate(people):
                when = now - timedelta(minutes=n % 20000)
                if n % 2 == 0:
                    row = ("success", None, person_id, "Matched by Clever ID (rule 1).")
                    cp.write_row(
                        (
                            f"LA-S{n:09d}",
                            when,
                            "rocketlit",
                            "bench-usd",
                            CLEVER_DISTRICT,
                            clever_id,
                            "student",
                            *row,
                        )
                    )
                if n % 20 == 0:
                    failed = ("failure", "no_account", None, "No account matches this Clever login.")
                    cp.write_row(
                        (
                            f"LA-F{n:09d}",
                            when,
                            "innerorbit",
                            "bench-usd",
                            CLEVER_DISTRICT,
                            f"{0x6E0000000000000000000000 + n:024x}",
                            "student",
                            *failed,
                        )
                    )
        report = {
            "summary": {"rows": students * 6, "schools": 240, "students": students},
            "changes": {
                entity: {"created": 10, "updated": 200, "deactivated": 3, "reactivated": 0, "unchanged": 1}
                for entity in ("schools", "classes", "teachers", "students", "enrollments", "accounts")
            },
            "errors": [
                {
                    "line": 10 + i,
                    "column": "student_email",
                    "code": "INVALID_EMAIL",
                    "message": "Not an email.",
                    "hint": "Use name@example.org.",
                }
                for i in range(200)
            ],
            "error_count": 200,
        }
        for n in range(50):
            status = "rejected" if n == 0 else "applied"
            cur.execute(
                "INSERT INTO import_run (id, district_id, status, source, dry_run, size_bytes, report, "
                "error_count, warning_count, attempts, created_at) "
                "VALUES (%s, 'bench-usd', %s, 'sftp', false, 1000, %s, %s, 0, 1, %s)",
                (
                    f"imp_bench{n:03d}",
                    status,
                    json.dumps(report if n == 0 else {}),
                    200 if n == 0 else 0,
                    now - timedelta(days=n),
                ),
            )
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def _timed(client: object, path: str, requests: int) -> tuple[float, float, float]:
    import httpx

    assert isinstance(client, httpx.Client)
    start = time.perf_counter()
    response = client.get(path)
    first = (time.perf_counter() - start) * 1000
    assert response.status_code == 200, (path, response.status_code, response.text[:300])
    samples = []
    for _ in range(requests):
        start = time.perf_counter()
        response = client.get(path)
        samples.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, path
    samples.sort()
    return first, statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.95))]


def run(quick: bool, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench console")
    parser.add_argument("--students", type=int, default=2000 if quick else 170_000)
    parser.add_argument("--requests", type=int, default=5 if quick else 30)
    args = parser.parse_args(argv)

    from fastapi.testclient import TestClient

    from roster_api.auth import create_api_key
    from roster_api.db import make_engine, session_scope
    from roster_api.main import create_app
    from roster_api.roster import figures
    from roster_api.settings import Settings

    with fresh_database() as database, tempfile.TemporaryDirectory() as tmp:
        print(f"[console] seeding {args.students} students ...", flush=True)
        started = time.perf_counter()
        clever_ids, _ = seed(database, args.students)
        seed_console(database.libpq_url, args.students)
        print(f"[console] seeded in {time.perf_counter() - started:.0f} s", flush=True)
        engine = make_engine(database.sqlalchemy_url)
        with session_scope(engine) as session:
            _, key = create_api_key(session=session, name="bench-support", scopes=["admin"], district_id=None)
        # the import worker counts a district's figures after each applied import; the seed bypassed it
        with session_scope(engine) as session:
            started = time.perf_counter()
            figures.recount(session=session, district_id="bench-usd")
            counted_ms = (time.perf_counter() - started) * 1000
        print(f"[console] district figures counted in {counted_ms:.0f} ms (as after an import)", flush=True)
        engine.dispose()
        settings = Settings(
            database_url=database.sqlalchemy_url,
            data_dir=Path(tmp),
            run_worker=False,
            run_scheduler=False,
            log_level="WARNING",
        )
        with TestClient(create_app(settings)) as client:
            page = client.get("/console/login")
            token = CSRF.search(page.text)
            assert token
            signed = client.post("/console/login", data={"csrf_token": token.group(1), "api_key": key})
            assert signed.status_code == 200, signed.text[:300]
            with psycopg.connect(database.libpq_url) as conn:
                person = conn.execute(
                    "SELECT id FROM person WHERE district_id = 'bench-usd' AND role = 'student' LIMIT 1"
                ).fetchone()
            assert person
            d = "/console/d/bench-usd"
            pages = {
                "baseline GET /healthz": "/healthz",
                "districts": "/console/districts",
                "overview": d,
                "imports": f"{d}/imports",
                "imports ?status=applied": f"{d}/imports?status=applied",
                "import (200 errors)": f"{d}/imports/imp_bench000",
                "roster (schools)": f"{d}/roster",
                "roster search name": f"{d}/roster?q=Student12&role=student",
                "roster search nobody": f"{d}/roster?q=Zzq&role=student",
                "roster search late": f"{d}/roster?q=Student99&role=student",
                "roster search broad": f"{d}/roster?q=S&role=student",
                "roster search clever id": f"{d}/roster?q={clever_ids[0]}&role=student",
                "school": f"{d}/schools/sch-0000",
                "class": f"{d}/classes/cls-0000-000",
                "person": f"{d}/people/student/{person[0]}",
                "logins": f"{d}/logins",
                "logins failures": f"{d}/logins?outcome=failure&reason=no_account",
                "logins lookup": f"{d}/logins?reference=LA-S000000000",
                "settings": f"{d}/settings",
            }
            print(f"\n[console] {args.students} students, {args.requests} requests per page (ms)")
            print(f"{'page':<28} {'first':>8} {'p50':>8} {'p95':>8}")
            worst = 0.0
            for name, path in pages.items():
                first, p50, p95 = _timed(client, path, args.requests)
                if not name.startswith("baseline"):
                    worst = max(worst, p95)
                print(f"{name:<28} {first:8.1f} {p50:8.1f} {p95:8.1f}", flush=True)
        met = worst < TARGET_MS
        verdict = "MET" if met else "NOT MET"
        print(f"\n[console] slowest page p95 {worst:.1f} ms: target < {TARGET_MS:.0f} ms {verdict}")
        return 0 if met else 1
