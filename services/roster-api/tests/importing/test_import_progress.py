"""A running import's progress, on SQLite and PostgreSQL: in this process (the counters the CLI's bar
reads) and in `GET /v1/imports/{id}` (written by the lease heartbeat), moving forward only."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from roster_api.db import session_scope
from roster_api.importing import run as run_mod
from roster_api.importing import uploads
from roster_api.importing.normalize import normalize
from roster_api.importing.progress import Progress
from roster_api.importing.run import run_import
from roster_api.importing.service import to_public
from roster_api.models import District, ImportRun, License
from roster_api.settings import Settings

from .import_rows import csv_bytes, student

STUDENTS = 3000
PAUSE_AT = 1500
PHASES = ["reading", "checking", "comparing", "writing"]


@pytest.fixture
def queued(roster_engine: sa.Engine, roster_settings: Settings, tmp_path: Path) -> str:
    with session_scope(roster_engine) as session:
        session.add(District(id="d1", name="D1"))
        session.flush()
        session.add(License(district_id="d1", product="rocketlit", seats=10_000))
    path = tmp_path / "roster.csv"
    path.write_bytes(csv_bytes([student(n) for n in range(1, STUDENTS + 1)]))
    run = uploads.enqueue_file(
        engine=roster_engine,
        settings=roster_settings,
        district_id="d1",
        source="api",
        src_path=path,
        filename="roster.csv",
        created_by="test",
    )
    return run.id


def stored(engine: sa.Engine, import_id: str) -> dict[str, Any]:
    with Session(engine) as session:
        run = session.get(ImportRun, import_id)
        assert run is not None
        return to_public(run).model_dump(mode="json")


def test_progress_moves_forward_and_is_visible_while_running(
    roster_engine: sa.Engine, roster_settings: Settings, queued: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    midway, release = threading.Event(), threading.Event()
    real_normalize = normalize

    def paused_normalize(parsed: Any, on_enrollments: Any) -> Any:
        rows = parsed.rows()

        def paused() -> Any:
            for n, record in enumerate(rows, start=1):
                yield record
                if n == PAUSE_AT:
                    midway.set()
                    release.wait(30)

        parsed._rows = paused()
        return real_normalize(parsed, on_enrollments)

    monkeypatch.setattr(run_mod, "normalize", paused_normalize)
    progress = Progress()
    snapshots: list[dict[str, Any]] = []
    worker = threading.Thread(
        target=run_import,
        kwargs={
            "engine": roster_engine,
            "settings": roster_settings,
            "import_id": queued,
            "progress": progress,
        },
    )
    worker.start()
    try:
        assert midway.wait(30)
        now = progress.snapshot()
        assert now["phase"] == "reading"
        assert now["rows_read"] >= PAUSE_AT
        assert 0 < now["bytes_read"] < now["total_bytes"]
        assert 0 < now["percent"] < 70
        # the heartbeat writes it to the import's record (reading: no lock held yet, on either database)
        deadline = time.monotonic() + 10
        while (body := stored(roster_engine, queued))["progress"] is None and time.monotonic() < deadline:
            release.wait(0.05)
        assert body["status"] == "running"
        assert body["progress"]["phase"] == "reading"
        assert body["progress"]["rows_read"] >= PAUSE_AT
        assert body["progress"]["total_bytes"] == body["size_bytes"]
    finally:
        release.set()
    while worker.is_alive():
        snapshots.append(progress.snapshot())
        worker.join(0.001)
    snapshots.append(progress.snapshot())
    for key in ("rows_read", "bytes_read", "percent"):
        values = [s[key] for s in snapshots]
        assert values == sorted(values), key
    phases = [PHASES.index(s["phase"]) for s in snapshots]
    assert phases == sorted(phases)
    assert snapshots[-1]["rows_read"] == STUDENTS
    assert snapshots[-1]["phase"] == "writing"
    done = stored(roster_engine, queued)
    assert (done["status"], done["progress"]) == ("applied", None)
