"""The import worker: claims queued imports from the database and runs them, one at a time; every so
often it deletes uploads past their retention and expires the holds nobody decided in time. Once idle
after starting, it counts the console's figures of the districts that have none (roster.figures), so
their first overview finds them.

The queue itself (claims, leases, retries) is `importing.queue`; the run is `importing.run`. Results
files are written by the subscriber registered around each import (`intake.delivery`), after each
outcome commits."""

from __future__ import annotations

import logging
import threading
import time

import sqlalchemy as sa
from sqlmodel import Session

from roster_api.importing import queue, service, uploads
from roster_api.importing.run import run_import
from roster_api.intake import delivery
from roster_api.models import ImportRun
from roster_api.roster import figures
from roster_api.settings import Settings

log = logging.getLogger("roster_api.worker")
SWEEP_EVERY_SECONDS = 3600.0


class ImportWorker:
    def __init__(self, *, engine: sa.Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by an import queued in this process (or by stop)
        self._thread: threading.Thread | None = None
        self._last_sweep = 0.0
        self._figures_due = True  # districts without figures are counted once the queue is empty

    def claim_next(self) -> tuple[str, int] | None:
        """(import id, attempt) of the import now owned by this worker, or None when nothing waits."""
        return queue.claim_next(engine=self.engine, settings=self.settings)

    def run_once(self) -> ImportRun | None:
        """Claims and runs one import; None when the queue is empty."""
        claimed = self.claim_next()
        if claimed is None:
            return None
        import_id, attempt = claimed
        log.info("import started", extra={"fields": {"import_id": import_id, "attempt": attempt}})
        started = time.perf_counter()
        with delivery.delivering(settings=self.settings, engine=self.engine):
            run = run_import(engine=self.engine, settings=self.settings, import_id=import_id, attempt=attempt)
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
        if run.status == "applied":  # the console's overview then shows the new seats and shares
            figures.recount_quietly(self.engine, run.district_id)
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
            deleted = uploads.delete_expired_uploads(engine=self.engine, settings=self.settings)
        except Exception as exc:  # retention must never stop the worker
            log.warning("upload retention sweep failed", extra={"fields": {"error": type(exc).__name__}})
            return
        if deleted:
            log.info("expired uploads deleted", extra={"fields": {"count": deleted}})

    def sweep_holds(self) -> None:
        try:
            with delivery.delivering(settings=self.settings, engine=self.engine):
                expired = service.expire_holds(engine=self.engine)
        except Exception as exc:  # the sweep must never stop the worker
            log.warning("hold expiry sweep failed", extra={"fields": {"error": type(exc).__name__}})
            return
        if expired:
            log.info("held imports expired", extra={"fields": {"count": len(expired)}})

    def sweep(self) -> None:
        self.sweep_uploads()
        self.sweep_holds()

    def count_missing_figures(self) -> bool:
        """Counts the figures of every district that has none (0.5-1 s each at 170,000 students), one
        after the other. Stops early, returning False, when the worker is stopped or an import is
        queued: imports come first, and the rest are counted at the next idle moment."""
        try:
            with Session(self.engine) as session:
                missing = figures.districts_without_figures(session=session)
        except Exception as exc:  # the database is down, say: try again when next idle
            log.warning("district figures not listed", extra={"fields": {"error": type(exc).__name__}})
            return False
        for district_id in missing:
            if self._stop.is_set() or self._wake.is_set():
                return False
            figures.recount_quietly(self.engine, district_id)
        if missing:
            log.info("district figures counted", extra={"fields": {"districts": len(missing)}})
        return True

    def run_forever(self) -> None:
        poll = self.settings.worker_poll_seconds
        while not self._stop.is_set():
            self._wake.clear()
            if time.monotonic() - self._last_sweep > SWEEP_EVERY_SECONDS or not self._last_sweep:
                self._last_sweep = time.monotonic()
                self.sweep()
            try:
                ran = self.run_once()
            except Exception as exc:  # the database is down, say: wait and try again
                log.error("worker loop error", extra={"fields": {"error": type(exc).__name__}})
                ran = None
            if ran is None:
                if self._figures_due:
                    self._figures_due = not self.count_missing_figures()
                self._wake.wait(poll)

    def start(self) -> None:
        """In a background thread (the worker inside `roster-api serve`)."""
        self._stop.clear()
        queue.on_queued(self._wake.set)
        self._thread = threading.Thread(target=self.run_forever, name="import-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stops after the current import. One still running after `timeout` is abandoned: its
        transaction never commits and its lease expires, so another worker runs it again."""
        queue.off_queued(self._wake.set)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wait(self, poll: float = 1.0) -> None:
        """Until the background thread ends (stopped)."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(poll)
