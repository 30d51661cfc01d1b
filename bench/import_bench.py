"""Import benchmark. `python -m bench import [--quick] [--students N] [--only b,d,e] [--no-sqlite]`

On a fresh PostgreSQL database that it creates and drops (ROSTER_BENCH_POSTGRES_URL, default the local
server), with a seeded synthetic district (bench/roster_gen.py), it measures:
  (a) raw COPY of the file into an unlogged staging table: the baseline (median of three runs)
  (b) a full import into an empty district
  (c) the identical file again (skipped by its sha256)
  (d) the file with 1 % of the students added, changed or removed
  (e) a dry run (the original file against the roster of (d))
  (f) the district of (b) as a OneRoster 1.1 bulk zip, into an empty district (target <= 1.5x (b))
  (g) end to end as a district sees it: the file of (b) uploaded over HTTP to a running roster-api (one
      uvicorn worker, its import worker inside), into an empty district, until the import reads applied
and the peak memory (max RSS) of the process that runs each import; then (b) on SQLite. Each import runs
in a child process of its own, so its peak memory is its own. Times are `run_import` (parse, validate,
diff, apply, commit); storing the upload is not included. `--only` runs a subset (the baseline always;
(c), (d) and (e) need (b) first, so they bring it along).

The targets printed are the import-at-scale ones: ratios to (a) at up to 170,000 students, and the
million-student ones from 1,000,000 students on, where the peak memory of an importing process must stay
under 1 GiB."""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from bench.roster_gen import generate, oneroster_zip
from roster_harness import clean_env, fresh_database

ADMIN_URL = os.environ.get("ROSTER_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# ratio to (a), by district size
TARGETS = {"b": 3.0, "c": 0.1, "d": 2.5, "e": 2.5, "g": 4.0, "b-sqlite": 6.0}
TARGETS_MILLION = {"b": 3.5, "c": 0.1, "d": 3.0}
MILLION = 1_000_000
ONEROSTER_TARGET = 1.5  # (f) / (b)
MEMORY_TARGET_MIB = 1536  # any import, up to 170,000 students (a OneRoster package is read in memory)
MEMORY_TARGET_MILLION_MIB = 1024  # (b), (d), (e) at a million students
MEASUREMENTS = "abcdefg"


def _baseline_copy(url: str, path: Path) -> float:
    columns = ", ".join(f"c{i} text" for i in range(13))
    with psycopg.connect(url) as conn:
        conn.execute(f"CREATE UNLOGGED TABLE bench_staging ({columns})")
        conn.commit()
        started = time.perf_counter()
        with (
            conn.cursor().copy("COPY bench_staging FROM STDIN (FORMAT csv, HEADER true)") as copy,
            open(path, "rb") as source,
        ):
            while chunk := source.read(1 << 20):
                copy.write(chunk)
        conn.commit()
        seconds = time.perf_counter() - started
        conn.execute("DROP TABLE bench_staging")
        conn.commit()
    return seconds


def _setup(database_url: str, data_dir: Path) -> None:
    from roster_api.db import make_engine, migrate, session_scope
    from roster_api.models import District, License

    migrate(database_url)
    engine = make_engine(database_url)
    with session_scope(engine) as session:
        session.add(District(id="bench", name="Bench USD", hold_deactivate_pct=100, hold_update_pct=100))
        session.flush()
        session.add(License(district_id="bench", product="rocketlit", seats=10_000_000))
        session.add(License(district_id="bench", product="innerorbit", seats=10_000_000))
        session.add(District(id="bench-or", name="Bench USD (OneRoster)", hold_deactivate_pct=100))
        session.flush()
        session.add(License(district_id="bench-or", product="rocketlit", seats=10_000_000))
        session.add(License(district_id="bench-or", product="innerorbit", seats=10_000_000))
        session.add(District(id="bench-e2e", name="Bench USD (HTTP)", hold_deactivate_pct=100))
        session.flush()
        session.add(License(district_id="bench-e2e", product="rocketlit", seats=10_000_000))
        session.add(License(district_id="bench-e2e", product="innerorbit", seats=10_000_000))
    engine.dispose()
    data_dir.mkdir(parents=True, exist_ok=True)


def _child(
    database_url: str, data_dir: str, path: str, dry_run: bool, out: Any, district: str = "bench"
) -> None:
    """Runs one import in this (fresh) process and reports time, status and peak RSS."""
    from roster_api.db import make_engine
    from roster_api.importing import uploads
    from roster_api.importing.run import run_import
    from roster_api.settings import Settings

    settings = Settings(database_url=database_url, data_dir=Path(data_dir), run_worker=False)
    engine = make_engine(settings.database_url)
    run = uploads.enqueue_file(
        engine=engine,
        settings=settings,
        district_id=district,
        source="api",
        src_path=Path(path),
        filename=Path(path).name,
        created_by="bench",
        dry_run=dry_run,
    )
    started = time.perf_counter()
    run = run_import(engine=engine, settings=settings, import_id=run.id)
    seconds = time.perf_counter() - started
    engine.dispose()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.put(
        {
            "seconds": seconds,
            "status": run.status,
            "failure": run.failure,
            "timings": run.report.get("timings"),
            "summary": run.report.get("summary"),
            "peak_mib": peak_mib,
        }
    )


def _import(
    database_url: str, data_dir: Path, path: Path, dry_run: bool = False, district: str = "bench"
) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_child, args=(database_url, str(data_dir), str(path), dry_run, out, district))
    proc.start()
    result: dict[str, Any] = out.get()
    proc.join()
    return result


def _end_to_end(database_url: str, data_dir: Path, path: Path) -> dict[str, Any]:
    """(g): POST the file as the body, then GET the import until it ends, against a served roster-api."""
    import httpx

    from bench.resolve_bench import serve
    from roster_api.auth import create_api_key
    from roster_api.db import make_engine, session_scope

    engine = make_engine(database_url)
    with session_scope(engine) as session:
        _, key = create_api_key(
            session=session, name="bench-upload", scopes=["roster:write", "roster:read"], district_id=None
        )
    engine.dispose()
    env = clean_env(
        ROSTER_DATABASE_URL=database_url,
        ROSTER_DATA_DIR=str(data_dir),
        ROSTER_RUN_SCHEDULER="false",
        ROSTER_LOG_LEVEL="WARNING",
    )
    app = "roster_api.main:create_app"
    with serve("roster-api", app, env=env, factory=True, work=data_dir, health="/readyz") as (port, _):
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "text/csv"}
        with httpx.Client(base_url=base, headers=headers, timeout=600) as client, path.open("rb") as body:
            started = time.perf_counter()
            queued = client.post(
                "/v1/districts/bench-e2e/imports", params={"filename": path.name}, content=body
            )
            queued.raise_for_status()
            uploaded = time.perf_counter() - started
            run: dict[str, Any] = queued.json()
            while run["status"] in {"queued", "running"}:
                time.sleep(0.05)
                run = client.get(f"/v1/imports/{run['id']}").json()
            seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "status": run["status"],
        "timings": {"upload_ms": round(uploaded * 1000), **(run.get("report") or {}).get("timings", {})},
        "peak_mib": 0.0,
    }


def _load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def run(quick: bool, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench import")
    parser.add_argument("--students", type=int, default=3_000 if quick else 170_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--only", default=MEASUREMENTS, help="which of a-g to run, e.g. b,d,e")
    args, _ = parser.parse_known_args(argv)
    only = set(args.only.replace(",", "")) | {"a"}
    if only & set("cde"):
        only.add("b")
    targets = TARGETS_MILLION if args.students >= MILLION else TARGETS

    with tempfile.TemporaryDirectory(prefix="import-bench-") as tmp:
        work = Path(tmp)
        original, churned = work / "roster.csv", work / "roster-churn.csv"
        started = time.perf_counter()
        counts = generate(original, students=args.students, seed=args.seed)
        generate(churned, students=args.students, seed=args.seed, churn=0.01)
        packaged = work / "roster-oneroster.zip"
        if "f" in only:
            oneroster_zip(original, packaged)
        size_mb = original.stat().st_size / 1e6
        print(
            f"[import] generated {counts['rows']:,} rows, {counts['students']:,} students, "
            f"{counts['schools']} schools, {counts['teachers']:,} teachers, {counts['classes']:,} classes, "
            f"{size_mb:.0f} MB in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        print(f"[import] before: {_load()}", flush=True)
        results: dict[str, dict[str, Any]] = {}
        with fresh_database(ADMIN_URL, prefix="roster_bench") as database:
            pg_url = database.sqlalchemy_url
            _setup(pg_url, work / "pg")
            # the baseline is short and noisy: the median of three COPYs, each printed
            copies = sorted(_baseline_copy(database.libpq_url, original) for _ in range(3))
            baseline = copies[1]
            print(f"[import] baseline COPY runs: {', '.join(f'{c:.2f} s' for c in copies)}", flush=True)
            results["a"] = {"seconds": baseline, "status": "copied", "peak_mib": 0.0}
            runs: dict[str, Callable[[], dict[str, Any]]] = {
                "b": lambda: _import(pg_url, work / "pg", original),
                "c": lambda: _import(pg_url, work / "pg", original),
                "d": lambda: _import(pg_url, work / "pg", churned),
                "e": lambda: _import(pg_url, work / "pg", original, dry_run=True),
                "f": lambda: _import(pg_url, work / "pg", packaged, district="bench-or"),
                "g": lambda: _end_to_end(pg_url, work / "pg", original),
            }
            for key, measure in runs.items():
                if key in only:
                    results[key] = measure()
        if not args.no_sqlite:
            sqlite_url = f"sqlite:///{work / 'bench.db'}"
            _setup(sqlite_url, work / "sqlite")
            results["b-sqlite"] = _import(sqlite_url, work / "sqlite", original)

    labels = {
        "a": "(a) COPY into unlogged staging (baseline)",
        "b": "(b) full import, empty district",
        "c": "(c) identical file again",
        "d": "(d) 1 % of students changed",
        "e": "(e) dry run",
        "f": "(f) the same district as OneRoster 1.1 (zip)",
        "g": "(g) (b) end to end: HTTP upload to applied",
        "b-sqlite": "(b) full import on SQLite",
    }
    header = f"{'measurement':44} {'seconds':>8} {'x (a)':>7} {'target':>7} {'':>7} {'status':>9}"
    header += f" {'peak MiB':>9}"
    print(f"\n{header}")
    ok = True
    for key, label in labels.items():
        if key not in results:
            continue
        r = results[key]
        ratio = r["seconds"] / baseline
        target = targets.get(key)
        verdict = met = ""
        if target is not None:
            verdict, met = f"<={target:g}x", "met" if ratio <= target else "NOT met"
            ok &= ratio <= target
        expected = {
            "b": "applied",
            "c": "skipped",
            "d": "applied",
            "e": "validated",
            "f": "applied",
            "g": "applied",
            "b-sqlite": "applied",
        }
        if key in expected and r["status"] != expected[key]:
            ok = False
        print(
            f"{label:44} {r['seconds']:8.2f} {ratio:7.2f} {verdict:>7} {met:>7} {r['status']:>9} "
            f"{r['peak_mib']:9.0f}"
        )
        if r.get("timings"):
            print(f"{'':44} {r['timings']}")
        if r.get("failure"):
            print(f"{'':44} {r['failure']}")
    if "f" in results:
        versus = results["f"]["seconds"] / results["b"]["seconds"]
        ok &= versus <= ONEROSTER_TARGET and results["f"]["summary"] == {
            **results["b"]["summary"],
            "rows": results["f"]["summary"]["rows"],
        }
        print(f"\n(f) / (b): {versus:.2f}x (target <= {ONEROSTER_TARGET:g}x, the same roster summary)")
    peak = max(r["peak_mib"] for r in results.values())
    limit = MEMORY_TARGET_MILLION_MIB if args.students >= MILLION else MEMORY_TARGET_MIB
    ok &= peak <= limit
    print(f"\npeak memory of an importing process: {peak:.0f} MiB (target <= {limit} MiB)")
    print(f"after: {_load()}")
    print("import targets met" if ok else "import targets NOT met", flush=True)
    return 0 if ok or quick else 1


if __name__ == "__main__":
    sys.exit(run(quick="--quick" in sys.argv, argv=sys.argv[1:]))
