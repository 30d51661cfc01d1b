"""Imports: store an upload, queue it, run it (parse -> normalize -> diff -> apply), approve or discard a
held one. The HTTP route, the SFTP intake and the nightly job all end in `enqueue_file`/`run_import`."""

from __future__ import annotations

import contextlib
import csv
import gc
import hashlib
import io
import logging
import os
import secrets
import threading
import time
import traceback
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from roster_api import audit
from roster_api.auth import Principal
from roster_api.db import session_scope
from roster_api.errors import Conflict, NotFound, PayloadTooLarge, district_not_found
from roster_api.importing import apply as apply_mod
from roster_api.importing.csv_format import Problems, csv_safe
from roster_api.importing.diff import Current, Policy
from roster_api.importing.diff import diff as compute_diff
from roster_api.importing.normalize import Roster, normalize
from roster_api.importing.parse import NotUtf8, parse
from roster_api.importing.schemas import FINAL, ImportPublic, ImportStatus, ImportSummary
from roster_api.models import AuditEvent, District, ImportRun, utcnow
from roster_api.settings import Settings
from roster_shared.errors import ErrorCode

log = logging.getLogger("roster_api.importing")
MAX_ATTEMPTS = 3
COPY_CHUNK = 1 << 20
_table = ImportRun.__table__  # type: ignore[attr-defined]


def new_import_id() -> str:
    return "imp_" + secrets.token_hex(12)


def upload_dir(settings: Settings, district_id: str) -> Path:
    return settings.data_dir / "uploads" / district_id


def import_not_found(import_id: str) -> NotFound:
    return NotFound(f"Import {import_id!r} was not found.", code=ErrorCode.IMPORT_NOT_FOUND)


class UploadSink:
    """Writes an upload to `data_dir/uploads/<district>/<import_id>.csv` (0600) as it arrives, hashing
    and counting on the way; over `limit` bytes it stops with 413 and leaves nothing behind."""

    def __init__(self, *, settings: Settings, district_id: str, import_id: str, limit: int) -> None:
        directory = upload_dir(settings, district_id)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = directory / f"{import_id}.csv"
        self.partial = directory / f".{import_id}.part"
        self.limit = limit
        self.size = 0
        self.digest = hashlib.sha256()
        fd = os.open(self.partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.file = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            self.abort()
            raise too_large(self.limit)
        self.digest.update(data)
        self.file.write(data)

    def finish(self) -> tuple[Path, str, int]:
        self.file.close()
        os.replace(self.partial, self.path)
        return self.path, self.digest.hexdigest(), self.size

    def abort(self) -> None:
        if not self.file.closed:
            self.file.close()
        self.partial.unlink(missing_ok=True)


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The upload is larger than the limit of {limit} bytes (ROSTER_MAX_UPLOAD_BYTES).",
    )


def create_run(
    *,
    session: Session,
    import_id: str,
    district_id: str,
    source: str,
    path: Path,
    sha256: str,
    size: int,
    filename: str | None,
    created_by: str,
    dry_run: bool,
) -> ImportRun:
    run = ImportRun(
        id=import_id,
        district_id=district_id,
        status=ImportStatus.QUEUED.value,
        source=source,
        dry_run=dry_run,
        filename=(filename or None) and Path(filename).name[:255],
        sha256=sha256,
        size_bytes=size,
        upload_path=str(path),
        created_by=created_by[:100],
    )
    session.add(run)
    audit.record(
        session=session,
        actor=created_by,
        action="import.upload",
        district_id=district_id,
        target=import_id,
        details={"source": source, "dry_run": dry_run, "size_bytes": size, "sha256": sha256},
    )
    session.flush()
    return run


def enqueue_file(
    *,
    engine: sa.Engine,
    settings: Settings,
    district_id: str,
    source: str,
    src_path: Path,
    filename: str,
    created_by: str,
    dry_run: bool = False,
) -> ImportRun:
    """Copies `src_path` into the upload store and queues an import (committed). For the SFTP intake and
    the nightly job; the worker picks it up."""
    with session_scope(engine) as session:
        if session.get(District, district_id) is None:
            raise district_not_found(district_id)
    import_id = new_import_id()
    sink = UploadSink(settings=settings, district_id=district_id, import_id=import_id, limit=1 << 62)
    try:
        with open(src_path, "rb") as src:
            while chunk := src.read(COPY_CHUNK):
                sink.write(chunk)
        path, sha256, size = sink.finish()
    except BaseException:
        sink.abort()
        raise
    try:
        with session_scope(engine) as session:
            return create_run(
                session=session,
                import_id=import_id,
                district_id=district_id,
                source=source,
                path=path,
                sha256=sha256,
                size=size,
                filename=filename,
                created_by=created_by,
                dry_run=dry_run,
            )
    except BaseException:
        path.unlink(missing_ok=True)
        raise


# --- running ------------------------------------------------------------------------------------


class LeaseLost(Exception):
    """Another worker took the import over (our lease expired); our transaction is rolled back."""


def _now() -> datetime:
    return utcnow()


def claim(*, engine: sa.Engine, settings: Settings, import_id: str) -> int | None:
    """Marks one queued (or abandoned: lease expired) import as running under a fresh lease. Returns the
    attempt number that owns it, or None when it is not claimable."""
    with engine.begin() as conn:
        now = _now()
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
        return _take(conn, settings, import_id, attempts, now)


def _take(
    conn: sa.Connection, settings: Settings, import_id: str, attempts: int, now: datetime
) -> int | None:
    if attempts >= MAX_ATTEMPTS:
        conn.execute(
            sa.update(_table)
            .where(_table.c.id == import_id, _table.c.attempts == attempts)
            .values(
                status=ImportStatus.FAILED.value,
                failure=f"The import was interrupted {attempts} times; nothing was applied.",
                finished_at=now,
                lease_until=None,
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


class _Heartbeat:
    """Keeps the lease of a long import fresh, so no other worker mistakes it for abandoned."""

    def __init__(self, engine: sa.Engine, settings: Settings, import_id: str, attempt: int) -> None:
        self.stop = threading.Event()
        self.args = (engine, settings, import_id, attempt)
        self.thread = threading.Thread(target=self._run, name=f"lease-{import_id}", daemon=True)

    def _run(self) -> None:
        engine, settings, import_id, attempt = self.args
        every = max(1.0, settings.import_lease_seconds / 3)
        while not self.stop.wait(every):
            try:
                with engine.begin() as conn:
                    conn.execute(
                        sa.update(_table)
                        .where(
                            _table.c.id == import_id,
                            _table.c.attempts == attempt,
                            _table.c.status == ImportStatus.RUNNING.value,
                        )
                        .values(lease_until=_now() + timedelta(seconds=settings.import_lease_seconds))
                    )
            except sa.exc.SQLAlchemyError:
                log.warning("lease renewal failed", extra={"fields": {"import_id": import_id}})

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


def _problems_report(name: str, problems: Problems) -> dict[str, Any]:
    return {
        name: [p.as_dict() for p in problems.sorted()],
        f"{name[:-1]}_count": problems.total,
        f"{name}_by_code": dict(sorted(problems.by_code.items())),
    }


def _finish(
    conn: sa.Connection,
    import_id: str,
    attempt: int,
    status: ImportStatus,
    report: dict[str, Any],
    *,
    failure: str | None = None,
) -> None:
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
            finished_at=_now(),
        )
    )
    if result.rowcount != 1:
        raise LeaseLost(import_id)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


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


def run_import(
    *,
    engine: sa.Engine,
    settings: Settings,
    import_id: str,
    attempt: int | None = None,
    step: apply_mod.Step | None = None,
) -> ImportRun:
    """Runs one import to a resting status and returns it. `attempt` is the claim that owns it (the
    worker claims first); without it, the import is claimed here. `step` is called between apply steps.

    Everything the import changes, including its own status, commits in one transaction: a crash at any
    point leaves the roster as it was and the import claimable again."""
    if attempt is None:
        attempt = claim(engine=engine, settings=settings, import_id=import_id)
    if attempt is not None:
        with _Heartbeat(engine, settings, import_id, attempt), _no_cyclic_gc():
            try:
                _run(engine, import_id, attempt, step)
            except apply_mod.DistrictBusy:
                _release(engine, import_id, attempt)
            except LeaseLost:
                log.warning("import lease lost", extra={"fields": {"import_id": import_id}})
            except Exception as exc:
                _fail(engine, import_id, attempt, exc)
    with session_scope(engine) as session:
        run = session.get(ImportRun, import_id)
        if run is None:
            raise import_not_found(import_id)
        return run


def _release(engine: sa.Engine, import_id: str, attempt: int) -> None:
    """Another import of the district is applying: back to the queue, this attempt not counted."""
    with engine.begin() as conn:
        conn.execute(
            sa.update(_table)
            .where(_table.c.id == import_id, _table.c.attempts == attempt)
            .values(status=ImportStatus.QUEUED.value, attempts=attempt - 1, lease_until=None)
        )


def _fail(engine: sa.Engine, import_id: str, attempt: int, exc: Exception) -> None:
    # The type and where, never the message: database errors quote row values (emails, names).
    where = "".join(traceback.format_tb(exc.__traceback__, limit=-3))
    log.error(
        "import failed",
        extra={"fields": {"import_id": import_id, "error": type(exc).__name__, "where": where}},
    )
    with engine.begin() as conn, contextlib.suppress(LeaseLost):
        _finish(
            conn,
            import_id,
            attempt,
            ImportStatus.FAILED,
            {"error_count": 0, "warning_count": 0},
            failure=f"Internal error ({type(exc).__name__}); nothing was applied. "
            "Support can find the details in the logs under this import's id.",
        )


def _run(engine: sa.Engine, import_id: str, attempt: int, step: apply_mod.Step | None) -> None:
    started = time.perf_counter()
    with session_scope(engine) as session:
        run = session.get(ImportRun, import_id)
        assert run is not None
        district_id, dry_run, sha256 = run.district_id, run.dry_run, run.sha256
        approved = run.decided_by is not None
        upload_path = run.upload_path
        last_applied = None
        if not dry_run:
            last_applied = session.exec(
                select(ImportRun)
                .where(ImportRun.district_id == district_id, ImportRun.status == ImportStatus.APPLIED.value)
                .order_by(col(ImportRun.finished_at).desc())
                .limit(1)
            ).first()
    base: dict[str, Any] = {"sha256": sha256, "dry_run": dry_run}
    if last_applied is not None and last_applied.sha256 == sha256:
        report = {
            **base,
            **last_applied.report,
            "skipped_because": f"Same bytes as import {last_applied.id}, already applied.",
            "timings": {"total_ms": _ms(time.perf_counter() - started)},
        }
        report["changes"] = {}
        with engine.begin() as conn:
            _finish(conn, import_id, attempt, ImportStatus.SKIPPED, report | {"error_count": 0})
        return
    if not upload_path or not Path(upload_path).is_file():
        with engine.begin() as conn:
            _finish(
                conn,
                import_id,
                attempt,
                ImportStatus.FAILED,
                {**base, "error_count": 0, "warning_count": 0},
                failure="The uploaded file is no longer stored (retention period); upload it again.",
            )
        return
    with engine.connect() as conn:
        # PostgreSQL: the district is locked before the file is read, so that a first import can write
        # while it reads (SQLite's lock would stop every other writer, logins included, that long).
        # From the stream's start until the writer is closed, the connection is the writer thread's.
        early = not dry_run and apply_mod.is_postgres(conn)
        writer = stream = policy = None
        try:
            if early:
                policy = _lock(conn, district_id)
                writer, stream = _writer(conn, district_id)
            with open(upload_path, "rb") as source:
                try:  # a UTF-8 check of its own would cost a fifth of a large file's parse
                    roster = normalize(parse(source, assume_utf8=True), stream.add if stream else None)
                except NotUtf8:
                    # rare: not UTF-8 after all. Whatever the stream wrote goes, and the file is read
                    # again the way that finds the encoding first (and names the line).
                    if stream is not None and writer is not None:
                        stream.close()
                        writer.close()
                        conn.rollback()
                        _lock(conn, district_id)
                        writer, stream = _writer(conn, district_id)
                    roster = normalize(parse(source), stream.add if stream else None)
            if stream is not None:
                stream.close()
            parsed_at = time.perf_counter()
            base |= roster.file_info() | {"summary": roster.summary()}
            if roster.errors:
                if writer is not None:
                    writer.close()
                conn.rollback()
                report = (
                    base
                    | _problems_report("errors", roster.errors)
                    | _problems_report("warnings", roster.warnings)
                )
                report["timings"] = {
                    "parse_ms": _ms(parsed_at - started),
                    "total_ms": _ms(parsed_at - started),
                }
                with conn.begin():
                    _finish(conn, import_id, attempt, ImportStatus.REJECTED, report)
                return
            if not early:
                policy = _lock(conn, district_id)
            assert policy is not None
            if stream is not None:
                stream.write_students(roster, policy)
            status = _decide_and_apply(
                conn,
                import_id,
                attempt,
                district_id,
                roster,
                policy,
                base,
                approved,
                dry_run,
                step,
                started,
                writer,
                stream,
            )
        finally:
            if stream is not None:
                stream.close()  # idempotent; unblocks the COPY if reading the file failed
            if writer is not None:
                writer.close()
    if stream is not None and status is ImportStatus.APPLIED:
        apply_mod.refresh_statistics_later(engine)


def _lock(conn: sa.Connection, district_id: str) -> Policy:
    """Begins the import's transaction, takes the district's lock (DistrictBusy if another import
    holds it) and reads the district's licenses and thresholds."""
    apply_mod.begin(conn)
    apply_mod.lock_district(conn, district_id)
    return apply_mod.load_policy(conn, district_id)


def _writer(
    conn: sa.Connection, district_id: str
) -> tuple[apply_mod.Writer, apply_mod.FirstImportStream | None]:
    """The writer of this import (PostgreSQL), and the stream when it is the district's first."""
    writer = apply_mod.Writer(conn, district_id, _now())
    return writer, apply_mod.FirstImportStream.start(conn, writer, district_id)


def _decide_and_apply(
    conn: sa.Connection,
    import_id: str,
    attempt: int,
    district_id: str,
    roster: Roster,
    policy: Policy,
    base: dict[str, Any],
    approved: bool,
    dry_run: bool,
    step: apply_mod.Step | None,
    started: float,
    writer: apply_mod.Writer | None,
    stream: apply_mod.FirstImportStream | None,
) -> ImportStatus:
    """In the caller's transaction, which holds the district's lock. With `stream` the district had
    nothing to load, and the connection is the writer thread's (still COPYing the enrollments) until
    `write_plan` is done."""
    parsed_at = time.perf_counter()
    current = Current() if stream is not None else apply_mod.load_current(conn, district_id)
    loaded_at = time.perf_counter()
    result = compute_diff(roster, current, policy, streamed=stream.streamed if stream else None)
    del current
    diffed_at = time.perf_counter()
    errors, warnings = Problems(), Problems()
    errors.extend(roster.errors)
    errors.extend(result.errors)
    warnings.extend(roster.warnings)
    warnings.extend(result.warnings)
    report = base | {
        "changes": result.changes_report(),
        "seats": result.seats,
        "hold": {"held": result.held, "approved": approved, "reasons": result.hold_reasons},
    }
    report |= _problems_report("errors", errors) | _problems_report("warnings", warnings)
    if errors:
        status = ImportStatus.REJECTED
    elif dry_run:
        status = ImportStatus.VALIDATED
    elif result.held and not approved:
        status = ImportStatus.HELD
    else:
        status = ImportStatus.APPLIED
    if stream is not None and status is not ImportStatus.APPLIED and writer is not None:
        writer.close()
        conn.rollback()  # the streamed enrollments and students go; the status is recorded below
    if status is ImportStatus.APPLIED:
        apply_mod.write_plan(
            conn,
            district_id,
            result.plan,
            _now(),
            step,
            writer,
            written_people=set(stream.ids.values()) if stream else (),
        )
    applied_at = time.perf_counter()
    report["timings"] = {
        "parse_ms": _ms(parsed_at - started),
        "load_ms": _ms(loaded_at - parsed_at),
        "diff_ms": _ms(diffed_at - loaded_at),
        "apply_ms": _ms(applied_at - diffed_at),
        "total_ms": _ms(applied_at - started),
    }
    _finish(conn, import_id, attempt, status, report)
    if status is ImportStatus.APPLIED:
        counts = {
            name: {k: v for k, v in change.items() if k != "samples"}
            for name, change in report["changes"].items()
        }
        conn.execute(
            sa.insert(AuditEvent.__table__).values(  # type: ignore[attr-defined]
                created_at=_now(),
                actor="import-worker",
                action="import.apply",
                district_id=district_id,
                target=import_id,
                details={"changes": counts},
            )
        )
    conn.commit()
    return status


# --- reading and deciding -----------------------------------------------------------------------


def get_import(*, session: Session, import_id: str, principal: Principal) -> ImportRun:
    run = session.get(ImportRun, import_id) if len(import_id) <= 32 else None
    if run is None or not principal.sees(run.district_id):
        raise import_not_found(import_id)
    return run


def list_imports(
    *, session: Session, district_id: str, limit: int, offset: int
) -> tuple[list[ImportRun], int]:
    total = session.exec(
        select(func.count()).select_from(ImportRun).where(ImportRun.district_id == district_id)
    ).one()
    rows = session.exec(
        select(ImportRun)
        .where(ImportRun.district_id == district_id)
        .order_by(col(ImportRun.created_at).desc(), col(ImportRun.id).desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), total


def _held(run: ImportRun) -> None:
    if run.status != ImportStatus.HELD.value:
        raise Conflict(
            f"Import {run.id} is {run.status}, not held; only a held import can be approved or discarded.",
            code=ErrorCode.IMPORT_NOT_HELD,
        )


def approve(*, session: Session, run: ImportRun, actor: str) -> ImportRun:
    """Queues the held import again, this time past the safety hold. It is applied against the roster as
    it is then (the worker diffs again), so a roster changed in between is never overwritten blindly."""
    _held(run)
    run.status = ImportStatus.QUEUED.value
    run.decided_by = actor[:100]
    run.attempts = 0
    session.add(run)
    audit.record(
        session=session, actor=actor, action="import.approve", district_id=run.district_id, target=run.id
    )
    session.flush()
    return run


def discard(*, session: Session, run: ImportRun, actor: str) -> ImportRun:
    _held(run)
    run.status = ImportStatus.DISCARDED.value
    run.decided_by = actor[:100]
    run.finished_at = _now()
    session.add(run)
    audit.record(
        session=session, actor=actor, action="import.discard", district_id=run.district_id, target=run.id
    )
    session.flush()
    return run


def to_summary(run: ImportRun) -> ImportSummary:
    return ImportSummary(
        id=run.id,
        district_id=run.district_id,
        status=ImportStatus(run.status),
        source=run.source,
        dry_run=run.dry_run,
        filename=run.filename,
        sha256=run.sha256,
        size_bytes=run.size_bytes,
        error_count=run.error_count,
        warning_count=run.warning_count,
        attempts=run.attempts,
        failure=run.failure,
        created_by=run.created_by,
        decided_by=run.decided_by,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        summary=dict(run.report.get("summary") or {}),
    )


def to_public(run: ImportRun) -> ImportPublic:
    return ImportPublic(**to_summary(run).model_dump(), report=run.report)


def errors_csv(run: ImportRun) -> str:
    """The listed errors, then warnings, as CSV; every cell escaped against formula injection."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["severity", "line", "column", "code", "message", "hint"])
    for severity, key in (("error", "errors"), ("warning", "warnings")):
        for item in run.report.get(key) or []:
            cells = [
                severity,
                "" if item.get("line") is None else str(item["line"]),
                item.get("column") or "",
                item.get("code") or "",
                item.get("message") or "",
                item.get("hint") or "",
            ]
            writer.writerow([csv_safe(cell) for cell in cells])
    return out.getvalue()


def is_final(status: str) -> bool:
    return status in {s.value for s in FINAL}


# --- retention ----------------------------------------------------------------------------------


def delete_expired_uploads(*, engine: sa.Engine, settings: Settings, now: datetime | None = None) -> int:
    """Deletes stored uploads of finished imports older than ROSTER_UPLOAD_RETENTION_DAYS, and partial
    uploads left by interrupted requests. Queued and held imports keep their files."""
    now = now or _now()
    cutoff = now - timedelta(days=settings.upload_retention_days)
    final = [s.value for s in FINAL]
    deleted = 0
    with session_scope(engine) as session:
        runs = session.exec(
            select(ImportRun).where(
                col(ImportRun.upload_path).is_not(None),
                col(ImportRun.status).in_(final),
                ImportRun.created_at < cutoff,
            )
        ).all()
        for run in runs:
            if run.upload_path:
                path = Path(run.upload_path)
                if path.exists():
                    path.unlink()
                    deleted += 1
            run.upload_path = None
            session.add(run)
    root = settings.data_dir / "uploads"
    if root.is_dir():
        stale = now.timestamp() - 86_400
        for partial in root.glob("*/.*.part"):
            try:
                if partial.stat().st_mtime < stale:
                    partial.unlink()
            except FileNotFoundError:
                continue
    return deleted


def notify_result(*, settings: Settings, run: ImportRun) -> None:
    """Writes the result file of an SFTP or nightly import into the district's SFTP folder. A failure to
    write it is logged, never raised: the import itself is done."""
    if run.source not in {"sftp", "nightly"}:
        return
    from roster_api.intake.results import write_result

    try:
        write_result(settings=settings, run=run)
    except Exception as exc:  # the roster is applied; the result file is a courtesy
        log.warning(
            "could not write the import result file",
            extra={"fields": {"import_id": run.id, "error": type(exc).__name__}},
        )
