"""Did the import get slower than at an earlier commit? `python -m bench.import_ab --base REV`

On a shared or virtual machine an import's wall time moves by 10-20 % from one run to the next, more
than the regression one wants to see (the import lifecycle work was to stay within 5 % of before). This
counts instructions instead: each
import runs once under valgrind's callgrind, whose count of executed instructions is the same from run to
run (with PYTHONHASHSEED fixed), for the working tree and for REV (checked out in a temporary git
worktree, run with this venv's packages). Per tree and case: the instructions of a process that imports
the file, minus those of the same process that only stores the upload (startup and sha256), so what is
compared is `run_import` alone. The lease/progress heartbeat is turned off in both (under valgrind an
import takes 50x longer, so the heartbeat would run 50x more often than in real life); its own cost is a
separate figure of the import lifecycle's bench notes.

Cases, on a fresh PostgreSQL database per tree: (b) a first import, (d) the file with 1 % of students
changed, (e) a dry run of that file. Needs `valgrind` and git; 20-25 minutes at 50,000 students.
Instructions are not time (cache misses and I/O are not counted): read this together with the wall-time
bench (`python -m bench import`), not instead of it."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = {"b": "first import", "d": "1 % of students changed", "e": "dry run of (d)'s file"}

# Runs inside the tree under test (its packages first on sys.path): setup | store | b | d | e
_CHILD = r"""
import sys
from pathlib import Path
mode, work, url = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
import importlib
try:
    uploads = importlib.import_module("roster_api.importing.uploads")
    runner = importlib.import_module("roster_api.importing.run")
    queue = importlib.import_module("roster_api.importing.queue")
    queue.PROGRESS_EVERY_SECONDS = 3600.0  # see the module's docstring
except ImportError:  # before the import code moved into rooms
    uploads = runner = importlib.import_module("roster_api.importing.service")
from roster_api.db import make_engine
from roster_api.settings import Settings
settings = Settings(database_url=url, data_dir=work / "data", run_worker=False)
if mode == "setup":
    from bench import import_bench
    import_bench._setup(url, work / "data")
    sys.exit(0)
name = {"store": "roster.csv", "b": "roster.csv", "d": "churn.csv", "e": "churn.csv"}[mode]
engine = make_engine(url)
run = uploads.enqueue_file(engine=engine, settings=settings, district_id="bench", source="api",
    src_path=work / name, filename=name, created_by="bench", dry_run=mode == "e")
if mode != "store":
    run = runner.run_import(engine=engine, settings=settings, import_id=run.id)
    print("status", run.status)
engine.dispose()
"""


def _instructions(tree: Path, args: list[str], env: dict[str, str]) -> tuple[int, str]:
    with tempfile.NamedTemporaryFile(suffix=".out") as out:
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out.name}"]
        proc = subprocess.run(
            [*command, sys.executable, "-c", _CHILD, *args],
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    found = re.search(r"Collected : (\d+)", proc.stderr)
    status = re.search(r"status (\w+)", proc.stdout)
    if found is None:
        raise RuntimeError(f"callgrind printed no count:\n{proc.stderr[-2000:]}")
    return int(found.group(1)), status.group(1) if status else ""


def _tree_env(tree: Path) -> dict[str, str]:
    paths = [tree / "services" / "roster-api" / "src", tree / "shared" / "src", tree]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, paths)), "PYTHONHASHSEED": "0"}


def _measure(tree: Path, work: Path, admin_url: str, label: str) -> dict[str, int]:
    from roster_harness import fresh_database

    env = _tree_env(tree)
    counts: dict[str, int] = {}
    with fresh_database(admin_url, prefix=f"import_ab_{label}") as database:
        url = database.sqlalchemy_url
        subprocess.run([sys.executable, "-c", _CHILD, "setup", str(work), url], cwd=tree, env=env, check=True)
        store, _ = _instructions(tree, ["store", str(work), url], env)
        for case in CASES:  # in this order: (d) changes the roster (b) wrote, (e) is a dry run of it
            total, status = _instructions(tree, [case, str(work), url], env)
            counts[case] = total - store
            millions = counts[case] / 1e6
            print(f"[import-ab] {label} ({case}) {status}: {millions:,.0f} M instructions", flush=True)
    return counts


def main() -> int:
    from bench.import_bench import ADMIN_URL
    from bench.roster_gen import generate

    parser = argparse.ArgumentParser(prog="python -m bench.import_ab", description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="the commit to compare with (e.g. a tag or a sha)")
    parser.add_argument("--students", type=int, default=50_000)
    parser.add_argument("--limit", type=float, default=5.0, help="allowed growth in percent (default 5)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="import-ab-") as tmp:
        work = Path(tmp)
        generate(work / "roster.csv", students=args.students, seed=1)
        generate(work / "churn.csv", students=args.students, seed=1, churn=0.01)
        base_tree = work / "base"
        add = ["git", "worktree", "add", "--detach", str(base_tree), args.base]
        subprocess.run(add, cwd=ROOT, check=True)
        try:
            head = _measure(ROOT, work, ADMIN_URL, "head")
            base = _measure(base_tree, work, ADMIN_URL, "base")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=ROOT, check=False)
    print(f"\n{'case':34} {'base G':>8} {'head G':>8} {'change':>8}")
    ok = True
    for case, label in CASES.items():
        change = (head[case] / base[case] - 1) * 100
        ok &= change <= args.limit
        print(f"({case}) {label:30} {base[case] / 1e9:8.3f} {head[case] / 1e9:8.3f} {change:+7.1f} %")
    verdict = "within" if ok else "NOT within"
    print(f"\n{verdict} {args.limit:g} % of {args.base}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
