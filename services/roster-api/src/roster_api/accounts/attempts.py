"""SQLite's background writer of login attempts. SQLite has one writer at a time and an import holds
the write lock while it applies, so a resolve that cannot take the lock at once hands its attempt
(reference and time already set, so the response does not wait) to this writer. It writes in small
transactions, retries while the database is busy, and drains its queue when it stops.

`flush` waits until every attempt handed over so far is written: the login-attempt routes call it
before they read. Attempts still queued are lost if the process is killed (README, Resolve)."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from roster_api.models import LoginAttempt

_log = logging.getLogger("roster_api.resolve")

QUEUE_SIZE = 10_000
BATCH_SIZE = 200
RETRY_SECONDS = 0.05
TRIES = 10  # each waits out SQLite's busy timeout (30 s) first
FLUSH_SECONDS = 30.0


class AttemptWriter:
    def __init__(self, engine: sa.Engine, *, queue_size: int = QUEUE_SIZE) -> None:
        self._engine = engine
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=queue_size)
        self._pending = 0
        self._idle = threading.Condition()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="login-attempt-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Writes what is queued, then ends the thread."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join()
        self._thread = None

    def submit(self, row: dict[str, Any]) -> bool:
        """Queues one attempt (all columns set); False when the queue is full or the writer stopped,
        and the caller writes it itself."""
        if self._thread is None:
            return False
        with self._idle:
            self._pending += 1
        try:
            self._queue.put_nowait(row)
        except queue.Full:
            self._done(1)
            return False
        return True

    def flush(self, timeout: float = FLUSH_SECONDS) -> bool:
        """Waits until every attempt queued so far is written (True), or `timeout` passes (False)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def _done(self, count: int) -> None:
        with self._idle:
            self._pending -= count
            self._idle.notify_all()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < BATCH_SIZE:
                try:
                    row = self._queue.get_nowait()
                except queue.Empty:
                    break
                if row is None:
                    stop = True
                    break
                batch.append(row)
            try:
                self._write(batch)
            finally:
                self._done(len(batch))
            if stop:
                return

    def _write(self, batch: list[dict[str, Any]]) -> None:
        for _ in range(TRIES):
            try:
                self._insert(batch)
                return
            except sa.exc.IntegrityError:
                break  # one bad row (a reference taken meanwhile): write the others one by one
            except sa.exc.OperationalError as exc:
                # busy past the busy timeout, or the database briefly unreachable: try again
                _log.warning("login attempt writer: %s; retrying", type(exc).__name__)
                threading.Event().wait(RETRY_SECONDS)
        for row in batch:
            try:
                self._insert([row])
            except sa.exc.SQLAlchemyError as exc:
                _log.error(
                    "login attempt not recorded",
                    extra={"fields": {"reference": row["reference"], "error": type(exc).__name__}},
                )

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        with Session(self._engine) as session:
            session.add_all(LoginAttempt(**row) for row in rows)
            session.commit()
