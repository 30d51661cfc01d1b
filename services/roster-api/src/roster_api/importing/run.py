"""Running one import, stage by stage, top to bottom:

    claim -> same bytes as the last applied? (skipped) -> read: parse -> normalize (rejected on errors)
    -> check: lock the district, load its roster -> compare: diff -> decide (validated | held | applied)
    -> write -> finish, supersede older holds, commit -> announce the outcome

Everything the import changes, including its own status, commits in one transaction: a crash at any
point leaves the roster as it was and the import claimable again. Outcomes are announced (published to
the subscribers: results files, notices) only after that commit."""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from roster_api.importing import apply as apply_mod
from roster_api.importing import changes, queue, readiness, service, skip
from roster_api.importing.csv_format import Problems
from roster_api.importing.diff import Diff
from roster_api.importing.diff import diff as compute_diff
from roster_api.importing.formats import mentions
from roster_api.importing.formats.stored import EarlyPairsDiffer, read_for_import
from roster_api.importing.normalize import Roster, normalize
from roster_api.importing.parse import NotUtf8, parse
from roster_api.importing.progress import Progress
from roster_api.importing.schemas import ImportStatus, Phase
from roster_api.importing.write import DistrictWrite
from roster_api.models import AuditEvent, ImportRun, utcnow
from roster_api.settings import Settings

log = logging.getLogger("roster_api.importing")
_audit = AuditEvent.__table__  # type: ignore[attr-defined]
_table = ImportRun.__table__  # type: ignore[attr-defined]
ACTIONS = {
    ImportStatus.APPLIED: "import.apply",
    ImportStatus.HELD: "import.hold",
    ImportStatus.VALIDATED: "import.validate",
    ImportStatus.REJECTED: "import.reject",
    ImportStatus.SKIPPED: "import.skip",
    ImportStatus.FAILED: "import.fail",
    ImportStatus.SUPERSEDED: "import.supersede",
}


def run_import(
    *,
    engine: sa.Engine,
    settings: Settings,
    import_id: str,
    attempt: int | None = None,
    step: apply_mod.Step | None = None,
    progress: Progress | None = None,
) -> ImportRun:
    """Runs one import to a resting status, announces its outcome and returns it. `attempt` is the
    claim that owns it (the worker claims first); without it, the import is claimed here. `step` is
    called between apply steps; `progress` (counters) lets the caller watch it in this process."""
    if attempt is None:
        attempt = queue.claim(engine=engine, settings=settings, import_id=import_id)
    if attempt is not None:
        _run_claimed(engine, settings, import_id, attempt, step, progress or Progress())
    return service.load_import(engine, import_id)


def _run_claimed(
    engine: sa.Engine,
    settings: Settings,
    import_id: str,
    attempt: int,
    step: apply_mod.Step | None,
    progress: Progress,
) -> None:
    ended: list[str] = []
    with queue.Heartbeat(engine, settings, import_id, attempt, progress.for_store), _no_cyclic_gc():
        try:
            ended = _Run(engine, import_id, attempt, step, progress).execute()
        except apply_mod.DistrictBusy:
            queue.release(engine, import_id, attempt)
        except queue.LeaseLost:
            log.warning("import lease lost", extra={"fields": {"import_id": import_id}})
        except Exception as exc:
            if queue.fail(engine, import_id, attempt, exc):
                ended = [import_id]
    service.announce(engine, ended)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


@dataclass
class _Run:
    engine: sa.Engine
    import_id: str
    attempt: int
    step: apply_mod.Step | None
    progress: Progress
    started: float = field(default_factory=time.perf_counter)
    marks: dict[str, float] = field(default_factory=dict)
    base: dict[str, Any] = field(default_factory=dict)
    record: ImportRun = field(init=False)
    row_policy: str = skip.REJECT
    skipped: skip.Mentioned | None = None  # under the `skip` row policy: what the skipped rows name
    keeping: list[threading.Thread] = field(default_factory=list)  # writing the kept upload's copy

    def execute(self) -> list[str]:
        """The ids of the imports whose outcome is to be announced (this one, and the holds it
        superseded)."""
        self.record = service.load_import(self.engine, self.import_id)
        self.base = {"sha256": self.record.sha256, "dry_run": self.record.dry_run}
        self.progress.total_bytes = self.record.size_bytes
        if (skipped := self._skip_same_bytes()) is not None:
            return skipped
        if not self.record.upload_path or not Path(self.record.upload_path).is_file():
            failure = "The uploaded file is no longer stored (retention period); upload it again."
            report = {**self.base, "error_count": 0, "warning_count": 0}
            with self.engine.begin() as conn:
                return self._finish(conn, ImportStatus.FAILED, report, failure=failure)
        with self.engine.connect() as conn:
            self.row_policy = skip.policy(conn, self.record.district_id)
        with self.engine.connect() as conn:
            write = DistrictWrite(conn, self.record.district_id)
            try:
                ended = self._read_check_write(write)
            finally:
                write.close()
                for thread in self.keeping:
                    thread.join()
        if write.first_import and self.record.status == ImportStatus.APPLIED.value:
            apply_mod.refresh_statistics_later(self.engine)
        return ended

    # --- stages -----------------------------------------------------------------------------

    def _skip_same_bytes(self) -> list[str] | None:
        if self.record.dry_run:
            return None
        with self.engine.connect() as conn:
            last = _last_applied(conn, self.record.district_id)
        if last is None or last[1] != self.record.sha256:
            return None
        report = {
            **self.base,
            **last[2],
            "skipped_because": f"Same bytes as import {last[0]}, already applied.",
            "timings": {"total_ms": _ms(time.perf_counter() - self.started)},
            "changes": {},
            "error_count": 0,
        }
        with self.engine.begin() as conn:
            return self._finish(conn, ImportStatus.SKIPPED, report)

    def _read_check_write(self, write: DistrictWrite) -> list[str]:
        """From the file to the committed outcome, on one connection."""
        if DistrictWrite.locks_early(write.conn, self.record.dry_run):
            write.lock(stream=True)
        roster = self._read(write)
        self.base |= roster.file_info() | {"summary": roster.summary()}
        if roster.errors:
            write.close()
            write.conn.rollback()
            report = self.base | _problems("errors", roster.errors) | _problems("warnings", roster.warnings)
            report["timings"] = self._timings()
            with write.conn.begin():
                district_id = self.record.district_id
                report["readiness"] = readiness.check(
                    write.conn, district_id=district_id, roster=roster, diff=None
                )
                return self._finish(write.conn, ImportStatus.REJECTED, report)
        self.progress.enter(Phase.CHECKING)
        if not write.locked:
            self.progress.store_blocked = not apply_mod.is_postgres(write.conn)
            write.lock(stream=False)
        current = write.current(links_in_memory=self.skipped is not None)
        if self.skipped is not None:
            skip.keep_stored(roster, current, self.skipped)
        self._mark("loaded")
        self.progress.enter(Phase.COMPARING)
        assert write.policy is not None
        result = compute_diff(roster, current, write.policy, streamed=write.streamed)
        del current
        self._mark("diffed")
        return self._decide_and_write(write, roster, result)

    def _read(self, write: DistrictWrite) -> Roster:
        """parse -> normalize: the file's rows, checked, as the district's roster."""
        assert self.record.upload_path is not None
        with open(self.record.upload_path, "rb") as source:
            self.progress.reading(source)
            try:  # a UTF-8 check of its own would cost a fifth of a large file's parse
                roster = self._parse_normalize(source, write, assume_utf8=True)
            except NotUtf8:
                # rare: not UTF-8 after all. Whatever the stream wrote goes, and the file is read
                # again the way that finds the encoding first (and names the line).
                write.restart()
                roster = self._parse_normalize(source, write, assume_utf8=False)
            except EarlyPairsDiffer:
                # never expected: a package's early enrollments were not its roster's. The stream
                # starts again and is given the roster's after the read.
                write.restart()
                roster = self._parse_normalize(source, write, assume_utf8=True, early_pairs=False)
            self._skip_rows(source, roster, write)
            write.end_reading(roster)
            self.progress.read(rows=roster.rows)
        self._mark("parsed")
        return roster

    def _skip_rows(self, source: Any, roster: Roster, write: DistrictWrite) -> None:
        """Under the `skip` row policy, a file whose errors are all on rows loses those rows: they are
        listed in the report and what they name is kept as stored (importing/skip.py; a package's
        rows: formats/mentions.py). A first import that streamed while reading is written the
        ordinary way instead: the stream holds rows that keeping things as stored takes out."""
        if self.row_policy != skip.SKIP or not skip.skippable(roster):
            return
        skipped = skip.take_errors(roster)
        if roster.format_info is not None:  # a package, or a zipped v1 file
            self.skipped = mentions.mentioned(source, skipped.sorted())
        else:
            self.skipped = skip.mentioned(source, {p.line for p in skipped.sorted() if p.line is not None})
        self.base |= _problems("skipped_rows", skipped)
        write.stop_streaming()

    def _parse_normalize(
        self, source: Any, write: DistrictWrite, *, assume_utf8: bool, early_pairs: bool = True
    ) -> Roster:
        package = read_for_import(  # OneRoster or Clever's files; None: a v1 CSV
            source,
            path=self.record.upload_path or "",
            engine=self.engine,
            district_id=self.record.district_id,
            on_enrollments=write.on_enrollments(),
            early_pairs=early_pairs,
            keeping=self.keeping,
        )
        if package is not None:
            return package
        parsed = parse(source, assume_utf8=assume_utf8)
        self.progress.count(parsed.rows())
        return normalize(parsed, write.on_enrollments())

    def _decide_and_write(self, write: DistrictWrite, roster: Roster, result: Diff) -> list[str]:
        """In the transaction that holds the district's lock. With a stream, the connection is the
        writer thread's (still COPYing the enrollments) until the plan is written."""
        errors, warnings = Problems(), Problems()
        errors.extend(roster.errors)
        errors.extend(result.errors)
        warnings.extend(roster.warnings)
        warnings.extend(result.warnings)
        approved = self.record.decided_by is not None
        report = self.base | {
            "changes": result.changes_report(),
            "seats": result.seats,
            "hold": {"held": result.held, "approved": approved, "reasons": result.hold_reasons},
        }
        report |= _problems("errors", errors) | _problems("warnings", warnings)
        status = _decision(bool(errors), self.record.dry_run, result.held and not approved)
        newer = None
        if approved:  # an approved hold runs again: never over a newer file applied meanwhile
            newer = service.newer_applied(
                write.conn, district_id=self.record.district_id, import_id=self.import_id
            )
        if newer is not None:
            status = ImportStatus.SUPERSEDED
        if status is not ImportStatus.APPLIED:
            write.discard()
        if status is ImportStatus.APPLIED:
            self.progress.enter(Phase.WRITING)
            write.write(result.plan, self._step)
        # after the plan: until then a first import's connection is its writer thread's
        district_id = self.record.district_id
        report["readiness"] = readiness.check(write.conn, district_id=district_id, roster=roster, diff=result)
        if status is not ImportStatus.REJECTED:
            changes.store(write.conn, import_id=self.import_id, district_id=district_id, diff=result)
        self._mark("applied")
        report["timings"] = self._timings()
        ended = self._finish(write.conn, status, report, superseded_by=newer)
        write.commit()
        return ended

    def _step(self, name: str) -> None:
        self.progress.step(name)
        if self.step is not None:
            self.step(name)

    # --- the end ----------------------------------------------------------------------------

    def _finish(
        self,
        conn: sa.Connection,
        status: ImportStatus,
        report: dict[str, Any],
        *,
        failure: str | None = None,
        superseded_by: str | None = None,
    ) -> list[str]:
        """In the caller's transaction: the import's status, its audit event, and (applied or held)
        the older holds it supersedes. The ids whose outcome is to be announced after commit."""
        queue.finish(conn, self.import_id, self.attempt, status, report, failure=failure)
        self.record.status = status.value
        details: dict[str, Any] = {"error_count": int(report.get("error_count", 0))}
        if status is ImportStatus.APPLIED:
            details = {"changes": _counts(report.get("changes") or {})}
        if superseded_by is not None:
            details = {"superseded_by": superseded_by}
            conn.execute(
                sa.update(_table).where(_table.c.id == self.import_id).values(superseded_by=superseded_by)
            )
        conn.execute(
            sa.insert(_audit).values(
                created_at=utcnow(),
                actor="import-worker",
                action=ACTIONS[status],
                district_id=self.record.district_id,
                target=self.import_id,
                details=details,
            )
        )
        older: list[str] = []
        if status in {ImportStatus.APPLIED, ImportStatus.HELD}:
            older = service.supersede_older_holds(
                conn, district_id=self.record.district_id, import_id=self.import_id
            )
        return [self.import_id, *older]

    def _mark(self, name: str) -> None:
        self.marks[name] = time.perf_counter()

    def _timings(self) -> dict[str, int]:
        parsed = self.marks.get("parsed", self.started)
        if "loaded" not in self.marks:
            return {"parse_ms": _ms(parsed - self.started), "total_ms": _ms(parsed - self.started)}
        loaded, diffed, applied = self.marks["loaded"], self.marks["diffed"], self.marks["applied"]
        return {
            "parse_ms": _ms(parsed - self.started),
            "load_ms": _ms(loaded - parsed),
            "diff_ms": _ms(diffed - loaded),
            "apply_ms": _ms(applied - diffed),
            "total_ms": _ms(applied - self.started),
        }


def _decision(errors: bool, dry_run: bool, held: bool) -> ImportStatus:
    if errors:
        return ImportStatus.REJECTED
    if dry_run:
        return ImportStatus.VALIDATED
    return ImportStatus.HELD if held else ImportStatus.APPLIED


def _last_applied(conn: sa.Connection, district_id: str) -> tuple[str, str | None, dict[str, Any]] | None:
    """(id, sha256, report) of the district's last applied import."""
    row = conn.execute(
        sa.select(_table.c.id, _table.c.sha256, _table.c.report)
        .where(_table.c.district_id == district_id, _table.c.status == ImportStatus.APPLIED.value)
        .order_by(_table.c.finished_at.desc())
        .limit(1)
    ).first()
    return None if row is None else (str(row[0]), row[1], dict(row[2] or {}))


def _problems(name: str, problems: Problems) -> dict[str, Any]:
    return {
        name: [p.as_dict() for p in problems.sorted()],
        f"{name[:-1]}_count": problems.total,
        f"{name}_by_code": dict(sorted(problems.by_code.items())),
    }


def _counts(changes: dict[str, Any]) -> dict[str, Any]:
    return {name: {k: v for k, v in change.items() if k != "samples"} for name, change in changes.items()}


_gc_lock = threading.Lock()
_gc_holders = 0
_gc_was_enabled = True


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """An import allocates millions of tuples; each allocation burst makes the cyclic collector walk
    every live container again (a full-size diff spent a third of its time there). Nothing the pipeline
    builds is cyclic, so reference counting frees it all: the collector is paused while any import runs
    in this process and resumed (if it was on) when the last one ends."""
    global _gc_holders, _gc_was_enabled
    with _gc_lock:
        if _gc_holders == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_holders += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_holders -= 1
            if _gc_holders == 0 and _gc_was_enabled:
                gc.enable()
