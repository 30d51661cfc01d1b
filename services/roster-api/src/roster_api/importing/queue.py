"""The import queue in `import_run`: claim an import under a lease, keep the lease fresh while it runs
(writing its progress on the way), finish it, give it back, or fail it.

A claim takes the oldest claimable import whose district has no other import running or queued before
it, marks it running under a lease (`lease_until`) and counts the attempt. On PostgreSQL the claim uses
`FOR UPDATE SKIP LOCKED`, so any number of workers and API replicas share the queue; on SQLite one
worker claims with BEGIN IMMEDIATE. An import whose worker died (lease expired) is claimed again; since
its apply is one transaction, the roster is exactly as before the interrupted attempt."""

from __future__ import annotations

import contextlib
import logging
import threading
import traceback
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from roster_api.importing.schemas import ImportStatus
from roster_api.models import ImportRun, utcnow
from roster_api.settings import Settings

log = logging.getLogger("roster_api.importing")
MAX_ATTEMPTS = 3
PROGRESS_EVERY_SECONDS = 0.5
_table = ImportRun.__table__  # type: ignore[attr-defined]


# Wake-ups of the workers in this process (`jobs.worker`), called when a transaction that queued an
# import commits: an upload is picked up at once instead of at the worker's next poll (up to
# ROSTER_WORKER_POLL_SECONDS later). Workers in other processes still find it by polling.
_wakers: list[Callable[[], None]] = []
_wakers_lock = threading.Lock()


def on_queued(wake: Callable[[], None]) -> None:
    with _wakers_lock:
        if wake not in _wakers:
            _wakers.append(wake)


def off_queued(wake: Callable[[], None]) -> None:
    with _wakers_lock:
        if wake in _wakers:
            _wakers.remove(wake)


def wake_after_commit(session: Any) -> None:
    """`session` (an ORM session) queues an import: this process's workers are woken once it commits
    (not before, or they would find nothing to claim and sleep a full poll)."""
    if not session.info.get("wakes_workers"):
        session.info["wakes_workers"] = True
        sa.event.listen(session, "after_commit", _wake_workers)


def _wake_workers(_session: Any) -> None:
    with _wakers_lock:
        wakers = list(_wakers)
    for wake in wakers:
        wake()


class LeaseLost(Exception):
    """Another worker took the import over (our lease expired); our transaction is rolled back."""


def claim(*, engine: sa.Engine, settings: Settings, import_id: str) -> int | None:
    """Marks one queued (or abandoned: lease expired) import as running under a fresh lease. Returns the
    attempt number that owns it, or None when it is not claimable."""
    with engine.begin() as conn:
        now = utcnow()
        row = conn.execute(
            sa.select(_table.c.status, _table.c.attempts, _table.c.lease_until).where(
                _table.c.id == import_id
            )
        ).one_or_none()
        if row is None:
            return None
        status, attempts, lease_until = row
        expired = status == ImportStatus.RUNNING and (lease_until is None or lease_until < now)
        if status != ImportStatus.QUEUED and not expired:
            return None
        return take(conn, settings, import_id, attempts, now)


def _claimable(now: datetime, postgres: bool) -> sa.Select[Any]:
    other = _table.alias("other")
    busy = (
        sa.select(sa.literal(1))
        .where(
            other.c.district_id == _table.c.district_id,
            other.c.id != _table.c.id,
            sa.or_(
                sa.and_(other.c.status == ImportStatus.RUNNING.value, other.c.lease_until >= now),
                sa.and_(
                    other.c.status == ImportStatus.QUEUED.value, other.c.created_at < _table.c.created_at
                ),
            ),
        )
        .exists()
    )
    query = (
        sa.select(_table.c.id, _table.c.attempts)
        .where(
            sa.or_(
                _table.c.status == ImportStatus.QUEUED.value,
                sa.and_(_table.c.status == ImportStatus.RUNNING.value, _table.c.lease_until < now),
            ),
            ~busy,
        )
        .order_by(_table.c.created_at, _table.c.id)
        .limit(1)
    )
    if postgres:
        query = query.with_for_update(skip_locked=True, of=_table)
    return query


def claim_next(*, engine: sa.Engine, settings: Settings) -> tuple[str, int] | None:
    """(import id, attempt) of the next import, now owned by the caller, or None when nothing waits."""
    postgres = engine.dialect.name == "postgresql"
    for _ in range(10):  # imports that ran out of attempts are failed and skipped
        with engine.connect() as conn:
            if not postgres:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            now = utcnow()
            row = conn.execute(_claimable(now, postgres)).one_or_none()
            if row is None:
                conn.commit()
                return None
            import_id, attempts = str(row[0]), int(row[1])
            attempt = take(conn, settings, import_id, attempts, now)
            conn.commit()
        if attempt is not None:
            return import_id, attempt
    return None


def take(conn: sa.Connection, settings: Settings, import_id: str, attempts: int, now: datetime) -> int | None:
    """In the caller's transaction: the import (seen with `attempts`) becomes running under a fresh
    lease; one out of attempts is failed instead. The new attempt number, or None."""
    if attempts >= MAX_ATTEMPTS:
        conn.execute(
            sa.update(_table)
            .where(_table.c.id == import_id, _table.c.attempts == attempts)
            .values(
                status=ImportStatus.FAILED.value,
                failure=f"The import was interrupted {attempts} times; nothing was applied.",
                finished_at=now,
                lease_until=None,
                progress=None,
            )
        )
        return None
    result = conn.execute(
        sa.update(_table)
        .where(_table.c.id == import_id, _table.c.attempts == attempts)
        .values(
            status=ImportStatus.RUNNING.value,
            attempts=attempts + 1,
            lease_until=now + timedelta(seconds=settings.import_lease_seconds),
            started_at=sa.func.coalesce(_table.c.started_at, now),
        )
    )
    return attempts + 1 if result.rowcount == 1 else None


class Heartbeat:
    """Keeps the lease of a long import fresh, so no other worker mistakes it for abandoned, and writes
    its progress (`report()`, read from the import's plain counters) about twice a second. Both from this
    thread, on a connection of its own: the import itself only bumps counters."""

    def __init__(
        self,
        engine: sa.Engine,
        settings: Settings,
        import_id: str,
        attempt: int,
        report: Callable[[], dict[str, Any] | None] | None = None,
    ) -> None:
        self.stop = threading.Event()
        self.engine, self.settings = engine, settings
        self.import_id, self.attempt = import_id, attempt
        self.report = report
        self.thread = threading.Thread(target=self._run, name=f"lease-{import_id}", daemon=True)

    def _run(self) -> None:
        renew_every = max(1.0, self.settings.import_lease_seconds / 3)
        every = PROGRESS_EVERY_SECONDS if self.report is not None else renew_every
        renewed = 0.0
        elapsed = 0.0
        while not self.stop.wait(every):
            elapsed += every
            values: dict[str, Any] = {}
            if elapsed - renewed >= renew_every:
                renewed = elapsed
                values["lease_until"] = utcnow() + timedelta(seconds=self.settings.import_lease_seconds)
            progress = self.report() if self.report is not None else None
            if progress is not None:
                values["progress"] = progress
            if values:
                self._write(values)

    def _write(self, values: dict[str, Any]) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    sa.update(_table)
                    .where(
                        _table.c.id == self.import_id,
                        _table.c.attempts == self.attempt,
                        _table.c.status == ImportStatus.RUNNING.value,
                    )
                    .values(**values)
                )
        except sa.exc.SQLAlchemyError:
            # SQLite: the import holds the only write lock from its check on; the lease is long enough
            log.warning("lease renewal failed", extra={"fields": {"import_id": self.import_id}})

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


def finish(
    conn: sa.Connection,
    import_id: str,
    attempt: int,
    status: ImportStatus,
    report: dict[str, Any],
    *,
    failure: str | None = None,
) -> None:
    """In the caller's transaction: the running import ends as `status` (LeaseLost if it is no longer
    ours)."""
    result = conn.execute(
        sa.update(_table)
        .where(
            _table.c.id == import_id,
            _table.c.attempts == attempt,
            _table.c.status == ImportStatus.RUNNING.value,
        )
        .values(
            status=status.value,
            report=report,
            error_count=int(report.get("error_count", 0)),
            warning_count=int(report.get("warning_count", 0)),
            failure=failure,
            lease_until=None,
            progress=None,
            finished_at=utcnow(),
        )
    )
    if result.rowcount != 1:
        raise LeaseLost(import_id)


def release(engine: sa.Engine, import_id: str, attempt: int) -> None:
    """Another import of the district is applying: back to the queue, this attempt not counted."""
    with engine.begin() as conn:
        conn.execute(
            sa.update(_table)
            .where(_table.c.id == import_id, _table.c.attempts == attempt)
            .values(status=ImportStatus.QUEUED.value, attempts=attempt - 1, lease_until=None, progress=None)
        )


def fail(engine: sa.Engine, import_id: str, attempt: int, exc: Exception) -> bool:
    """Records an unexpected error as `failed`. True when this attempt still owned the import."""
    # The type and where, never the message: database errors quote row values (emails, names).
    where = "".join(traceback.format_tb(exc.__traceback__, limit=-3))
    log.error(
        "import failed",
        extra={"fields": {"import_id": import_id, "error": type(exc).__name__, "where": where}},
    )
    with contextlib.suppress(LeaseLost), engine.begin() as conn:
        finish(
            conn,
            import_id,
            attempt,
            ImportStatus.FAILED,
            {"error_count": 0, "warning_count": 0},
            failure=f"Internal error ({type(exc).__name__}); nothing was applied. "
            "Support can find the details in the logs under this import's id.",
        )
        return True
    return False
