"""Deciding about imports: approve or discard a held import, supersede the holds a newer import
replaced, expire the holds nobody decided in time; reading imports; announcing their outcomes.

A district's newest import is its truth: when an import is applied or held, every older held import of
the district becomes `superseded` (in the same transaction), and approving or discarding one answers
409 IMPORT_SUPERSEDED naming the newer import. A hold not decided within the district's
`hold_expire_days` becomes `expired` (the worker's periodic sweep, and before any approve or discard)."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from roster_api import audit
from roster_api.auth import Principal
from roster_api.db import session_scope
from roster_api.errors import Conflict, NotFound
from roster_api.importing import queue
from roster_api.importing.csv_format import csv_safe
from roster_api.importing.outcomes import ImportOutcome, publish
from roster_api.importing.schemas import FINAL, ImportPublic, ImportStatus, ImportSummary, Progress
from roster_api.models import AuditEvent, District, ImportRun, utcnow
from roster_shared.errors import ErrorCode

log = logging.getLogger("roster_api.importing")
_table = ImportRun.__table__  # type: ignore[attr-defined]
_audit = AuditEvent.__table__  # type: ignore[attr-defined]
# the statuses whose outcome is announced (held waits for a decision, but the district is told)
ANNOUNCED = {s.value for s in FINAL} | {ImportStatus.HELD.value}


def import_not_found(import_id: str) -> NotFound:
    return NotFound(f"Import {import_id!r} was not found.", code=ErrorCode.IMPORT_NOT_FOUND)


# --- newer imports win --------------------------------------------------------------------------


def supersede_older_holds(conn: sa.Connection, *, district_id: str, import_id: str) -> list[str]:
    """In the caller's transaction (the import `import_id` is being applied or held): every held import
    of the district created before it becomes superseded by it. Returns their ids. `finished_at` stays
    the time it was held, so its results file (named by that time) is replaced by one that says so."""
    created_at = sa.select(_table.c.created_at).where(_table.c.id == import_id).scalar_subquery()
    older = conn.execute(
        sa.select(_table.c.id).where(
            _table.c.district_id == district_id,
            _table.c.status == ImportStatus.HELD.value,
            _table.c.id != import_id,
            _table.c.created_at < created_at,
        )
    ).scalars()
    ids = sorted(str(i) for i in older)
    if not ids:
        return []
    now = utcnow()
    conn.execute(
        sa.update(_table)
        .where(_table.c.id.in_(ids), _table.c.status == ImportStatus.HELD.value)
        .values(status=ImportStatus.SUPERSEDED.value, superseded_by=import_id)
    )
    _record(conn, "import.supersede", district_id, ids, {"superseded_by": import_id}, now)
    return ids


def newer_applied(conn: sa.Connection, *, district_id: str, import_id: str) -> str | None:
    """The newest import of the district applied after `import_id` was created, if any: an older file
    is never applied over a newer one."""
    created_at = sa.select(_table.c.created_at).where(_table.c.id == import_id).scalar_subquery()
    return conn.execute(
        sa.select(_table.c.id)
        .where(
            _table.c.district_id == district_id,
            _table.c.status == ImportStatus.APPLIED.value,
            _table.c.created_at > created_at,
        )
        .order_by(_table.c.created_at.desc())
        .limit(1)
    ).scalar()


def _record(
    conn: sa.Connection,
    action: str,
    district_id: str,
    targets: Iterable[str],
    details: dict[str, Any],
    now: datetime,
    actor: str = "import-worker",
) -> None:
    conn.execute(
        sa.insert(_audit),
        [
            {
                "created_at": now,
                "actor": actor,
                "action": action,
                "district_id": district_id,
                "target": target,
                "details": details,
            }
            for target in targets
        ],
    )


def expire_holds(
    *, engine: sa.Engine, district_id: str | None = None, now: datetime | None = None
) -> list[str]:
    """Held imports older than their district's `hold_expire_days` become expired (committed, then
    announced). Returns their ids."""
    now = now or utcnow()
    query = (
        sa.select(_table.c.id, _table.c.district_id, _table.c.finished_at, _table.c.created_at)
        .add_columns(District.hold_expire_days)  # type: ignore[arg-type]
        .join(District.__table__, District.id == _table.c.district_id)  # type: ignore[attr-defined]
        .where(_table.c.status == ImportStatus.HELD.value)
    )
    if district_id is not None:
        query = query.where(_table.c.district_id == district_id)
    expired: list[str] = []
    with engine.begin() as conn:
        for import_id, district, held_at, created_at, days in conn.execute(query).all():
            if (held_at or created_at) + timedelta(days=days) > now:
                continue
            done = conn.execute(
                sa.update(_table)
                .where(_table.c.id == import_id, _table.c.status == ImportStatus.HELD.value)
                .values(status=ImportStatus.EXPIRED.value)
            )
            if done.rowcount == 1:
                _record(conn, "import.expire", district, [import_id], {"after_days": days}, now)
                expired.append(import_id)
    announce(engine, expired)
    return expired


# --- approve and discard ------------------------------------------------------------------------


def _held(run: ImportRun) -> None:
    if run.status == ImportStatus.SUPERSEDED.value:
        raise Conflict(
            f"Import {run.id} was superseded by the newer import {run.superseded_by}: the district's "
            "newest file is its roster. Look at that import instead.",
            code=ErrorCode.IMPORT_SUPERSEDED,
            details=[{"field": "superseded_by", "message": str(run.superseded_by)}],
        )
    if run.status == ImportStatus.EXPIRED.value:
        raise Conflict(
            f"Import {run.id} expired: it was held and not decided in time. Upload the file again.",
            code=ErrorCode.IMPORT_EXPIRED,
        )
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
    queue.wake_after_commit(session)
    audit.record(
        session=session, actor=actor, action="import.approve", district_id=run.district_id, target=run.id
    )
    session.flush()
    return run


def discard(*, session: Session, run: ImportRun, actor: str) -> ImportRun:
    _held(run)
    run.status = ImportStatus.DISCARDED.value
    run.decided_by = actor[:100]
    run.finished_at = utcnow()
    session.add(run)
    audit.record(
        session=session, actor=actor, action="import.discard", district_id=run.district_id, target=run.id
    )
    session.flush()
    return run


def decide(*, engine: sa.Engine, import_id: str, principal: Principal, approve_it: bool) -> ImportRun:
    """Approve or discard, for the entry points (HTTP, CLI): a hold past its time expires first (409
    IMPORT_EXPIRED); a discard is announced once committed."""
    with session_scope(engine) as session:
        run = get_import(session=session, import_id=import_id, principal=principal)
        district_id = run.district_id
    expire_holds(engine=engine, district_id=district_id)
    with session_scope(engine) as session:
        run = get_import(session=session, import_id=import_id, principal=principal)
        (approve if approve_it else discard)(session=session, run=run, actor=principal.name)
    if not approve_it:
        announce(engine, [import_id])
    return run


# --- outcomes -----------------------------------------------------------------------------------


def outcome_of(run: ImportRun) -> ImportOutcome:
    return ImportOutcome(
        import_id=run.id,
        district_id=run.district_id,
        status=run.status,
        source=run.source,
        dry_run=run.dry_run,
        file_name=run.filename,
        superseded_by=run.superseded_by,
        report=dict(run.report or {}),
    )


def announce(engine: sa.Engine, import_ids: Iterable[str]) -> None:
    """Publishes the outcome of each import (committed) that has one to announce."""
    ids = list(import_ids)
    if not ids:
        return
    with Session(engine) as session:
        runs = session.exec(select(ImportRun).where(col(ImportRun.id).in_(ids))).all()
        outcomes = [outcome_of(run) for run in runs if run.status in ANNOUNCED]
    for outcome in sorted(outcomes, key=lambda o: ids.index(o.import_id)):
        publish(outcome)


# --- reading ------------------------------------------------------------------------------------


def load_import(engine: sa.Engine, import_id: str) -> ImportRun:
    with session_scope(engine) as session:
        run = session.get(ImportRun, import_id)
        if run is None:
            raise import_not_found(import_id)
        return run


def get_import(*, session: Session, import_id: str, principal: Principal) -> ImportRun:
    run = session.get(ImportRun, import_id) if len(import_id) <= 32 else None
    if run is None or not principal.sees(run.district_id):
        raise import_not_found(import_id)
    return run


def list_imports(
    *, session: Session, district_id: str, limit: int, offset: int, status: str | None = None
) -> tuple[list[ImportRun], int]:
    where = [ImportRun.district_id == district_id]
    if status is not None:
        where.append(ImportRun.status == status)
    total = session.exec(select(func.count()).select_from(ImportRun).where(*where)).one()
    rows = session.exec(
        select(ImportRun)
        .where(*where)
        .order_by(col(ImportRun.created_at).desc(), col(ImportRun.id).desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), total


def to_summary(run: ImportRun) -> ImportSummary:
    running = run.status == ImportStatus.RUNNING.value and run.progress
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
        superseded_by=run.superseded_by,
        progress=Progress.model_validate(run.progress) if running else None,
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
