"""The import worker: claims queued imports from the database and runs them.

Jobs live in `import_run`. A claim takes the oldest claimable import whose district has no other import
running or queued before it, marks it running under a lease (`lease_until`) and counts the attempt. On
PostgreSQL the claim uses `FOR UPDATE SKIP LOCKED`, so any number of workers and API replicas share the
queue; the apply step also holds a per-district advisory lock. On SQLite one worker claims with BEGIN
IMMEDIATE. An import whose worker died (lease expired) is claimed again; since its apply is one
transaction, the roster is exactly as before the interrupted attempt."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from roster_api.importing import service
from roster_api.importing.schemas import FINAL, ImportStatus
from roster_api.models import ImportRun, utcnow
from roster_api.settings import Settings

log = logging.getLogger("roster_api.worker")
_t = ImportRun.__table__  # type: ignore[attr-defined]
RETENTION_EVERY_SECONDS = 3600.0
REPORTED = {s.value for s in FINAL} | {ImportStatus.HELD.value}


def _claimable(now: datetime, postgres: bool) -> sa.Select[Any]:
    other = _t.alias("other")
    busy = (
        sa.select(sa.literal(1))
        .where(
            other.c.district_id == _t.c.district_id,
            other.c.id != _t.c.id,
            sa.or_(
                sa.and_(other.c.status == ImportStatus.RUNNING.value, other.c.lease_until >= now),
                sa.and_(other.c.status == ImportStatus.QUEUED.value, other.c.created_at < _t.c.created_at),
            ),
        )
        .exists()
    )
    query = (
        sa.select(_t.c.id, _t.c.attempts)
        .where(
            sa.or_(
                _t.c.status == ImportStatus.QUEUED.value,
                sa.and_(_t.c.status == ImportStatus.RUNNING.value, _t.c.lease_until < now),
            ),
            ~busy,
        )
        .order_by(_t.c.created_at, _t.c.id)
        .limit(1)
    )
    if postgres:
        query = query.with_for_update(skip_locked=True, of=_t)
    return query


class ImportWorker:
    def __init__(self, *, engine: sa.Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.postgres = engine.dialect.name == "postgresql"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_retention = 0.0

    def claim_next(self) -> tuple[str, int] | None:
        """(import id, attempt) of the import now owned by this worker, or None when nothing waits."""
        for _ in range(10):  # imports that ran out of attempts are failed and skipped
            with self.engine.connect() as conn:
                if not self.postgres:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                now = utcnow()
                row = conn.execute(_claimable(now, self.postgres)).one_or_none()
                if row is None:
                    conn.commit()
                    return None
                import_id, attempts = str(row[0]), int(row[1])
                attempt = service._take(conn, self.settings, import_id, attempts, now)
                conn.commit()
            if attempt is not None:
                return import_id, attempt
        return None

    def run_once(self) -> ImportRun | None:
        """Claims and runs one import; None when the queue is empty."""
        claimed = self.claim_next()
        if claimed is None:
            return None
        import_id, attempt = claimed
        log.info("import started", extra={"fields": {"import_id": import_id, "attempt": attempt}})
        started = time.perf_counter()
        run = service.run_import(
            engine=self.engine, settings=self.settings, import_id=import_id, attempt=attempt
        )
        log.info(
            "import finished",
            extra={
                "fields": {
                    "import_id": import_id,
                    "district_id": run.district_id,
                    "status": run.status,
                    "errors": run.error_count,
                    "seconds": round(time.perf_counter() - started, 3),
                }
            },
        )
        if run.status in REPORTED:
            service.notify_result(settings=self.settings, run=run)
        return run

    def run_until_idle(self, limit: int = 1000) -> list[ImportRun]:
        done: list[ImportRun] = []
        while len(done) < limit:
            run = self.run_once()
            if run is None:
                break
            done.append(run)
        return done

    def sweep_uploads(self) -> None:
        try:
            deleted = service.delete_expired_uploads(engine=self.engine, settings=self.settings)
        except Exception as exc:  # retention must never stop the worker
            log.warning("upload retention sweep failed", extra={"fields": {"error": type(exc).__name__}})
            return
        if deleted:
            log.info("expired uploads deleted", extra={"fields": {"count": deleted}})

    def run_forever(self) -> None:
        poll = self.settings.worker_poll_seconds
        while not self._stop.is_set():
            if time.monotonic() - self._last_retention > RETENTION_EVERY_SECONDS or not self._last_retention:
                self._last_retention = time.monotonic()
                self.sweep_uploads()
            try:
                ran = self.run_once()
            except Exception as exc:  # the database is down, say: wait and try again
                log.error("worker loop error", extra={"fields": {"error": type(exc).__name__}})
                ran = None
            if ran is None:
                self._stop.wait(poll)

    def start(self) -> None:
        """In a background thread (the worker inside `roster-api serve`)."""
        self._stop.clear()
        self._thread = threading.Thread(target=self.run_forever, name="import-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stops after the current import. One still running after `timeout` is abandoned: its
        transaction never commits and its lease expires, so another worker runs it again."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
