"""Nightly re-sync: each district's configured file (`roster.csv` by default) in its SFTP folder is
imported again when its bytes differ from the last applied import, and recorded as skipped otherwise.

Exactly once per district per local night, whatever the number of schedulers and replicas: the first to
insert the `nightly_run` row (district_id, run_date) does the work; everyone else sees the row and moves
on. `roster-api nightly` runs it from cron; `roster-api serve` runs `NightlyScheduler`, which checks every
minute whose local nightly time has come (with a catch-up window for a process that was down)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import stat
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from roster_api import notices
from roster_api.importing.uploads import Enqueue, enqueue_file
from roster_api.intake.preview import is_preview
from roster_api.intake.results import district_sftp_dir, remove_expired
from roster_api.models import District, ImportRun, NightlyRun, utcnow
from roster_api.settings import Settings

log = logging.getLogger("roster_api.nightly")

# Statuses of an import that has not reached a verdict the district must act on yet: the same file is
# not queued again while one of these is waiting.
PENDING = ("queued", "running", "held")


@dataclass(frozen=True)
class NightlyOutcome:
    district_id: str
    run_date: str
    # queued | skipped | pending | no_file | failed | already_done
    outcome: str
    import_id: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class _DistrictPlan:
    district_id: str
    timezone: str
    nightly_time: str
    file_name: str


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("unknown district time zone, using UTC", extra={"fields": {"timezone": name[:64]}})
        return ZoneInfo("UTC")


def _nightly_clock(value: str) -> time:
    try:
        hours, minutes = (int(part) for part in value.split(":", 1))
        return time(hours, minutes)
    except ValueError:
        return time(2, 0)


def local_date(timezone: str, now: datetime) -> str:
    return now.astimezone(_zone(timezone)).date().isoformat()


def due_date(*, timezone: str, nightly_time: str, now: datetime, window: timedelta) -> str | None:
    """The local date whose nightly run is due at `now`, or None. A run is due from the district's local
    nightly time until `window` later; the window may cross midnight, so yesterday's is checked too."""
    zone = _zone(timezone)
    at = _nightly_clock(nightly_time)
    today = now.astimezone(zone).date()
    for day in (today, today - timedelta(days=1)):
        # Compare in UTC: aware datetimes sharing a tzinfo compare by wall time, which DST would skew.
        start = datetime.combine(day, at, tzinfo=zone).astimezone(UTC)
        if start <= now.astimezone(UTC) < start + window:
            return day.isoformat()
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _claim(engine: sa.Engine, district_id: str, run_date: str) -> bool:
    """Insert-or-skip of (district_id, run_date): True for the one caller that inserted it."""
    table = NightlyRun.__table__  # type: ignore[attr-defined]
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(table)
        .values(district_id=district_id, run_date=run_date, outcome="started", created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["district_id", "run_date"])
        .returning(table.c.district_id)
    )
    # RETURNING, not rowcount: psycopg reports no reliable rowcount for INSERT .. ON CONFLICT DO NOTHING.
    with engine.begin() as conn:
        return conn.execute(statement).first() is not None


def _record(engine: sa.Engine, outcome: NightlyOutcome) -> None:
    with Session(engine) as session:
        row = session.get(NightlyRun, (outcome.district_id, outcome.run_date))
        if row is not None:
            row.outcome = outcome.outcome
            row.import_id = outcome.import_id
            session.add(row)
            session.commit()


def _plans(engine: sa.Engine, district_ids: Iterable[str] | None) -> list[_DistrictPlan]:
    with Session(engine) as session:
        query = select(District).order_by(col(District.id))
        if district_ids is not None:
            query = query.where(col(District.id).in_(list(district_ids)))
        return [
            _DistrictPlan(d.id, d.timezone, d.nightly_time, d.nightly_file_name)
            for d in session.exec(query).all()
        ]


def unknown_districts(engine: sa.Engine, district_ids: Iterable[str]) -> list[str]:
    wanted = sorted(set(district_ids))
    if not wanted:
        return []
    with Session(engine) as session:
        known = set(session.exec(select(District.id).where(col(District.id).in_(wanted))).all())
    return [d for d in wanted if d not in known]


def _already_claimed(engine: sa.Engine, wanted: list[tuple[str, str]]) -> set[tuple[str, str]]:
    if not wanted:
        return set()
    dates = sorted({d for _, d in wanted})
    with Session(engine) as session:
        rows = session.exec(
            select(NightlyRun.district_id, NightlyRun.run_date).where(col(NightlyRun.run_date).in_(dates))
        ).all()
    return {(district_id, run_date) for district_id, run_date in rows}


def sync_district(
    *,
    engine: sa.Engine,
    settings: Settings,
    district_id: str,
    file_name: str,
    run_date: str,
    enqueue: Enqueue,
) -> NightlyOutcome:
    if not _claim(engine, district_id, run_date):
        return NightlyOutcome(district_id, run_date, "already_done", detail="another scheduler ran it")
    try:
        outcome = _sync(engine, settings, district_id, file_name, run_date, enqueue)
    except Exception as exc:  # one district's failure must not stop the others
        log.exception(
            "nightly sync failed",
            extra={
                "fields": {"event": "nightly.failed", "district_id": district_id, "error": type(exc).__name__}
            },
        )
        outcome = NightlyOutcome(district_id, run_date, "failed", detail=type(exc).__name__)
    _record(engine, outcome)
    # no_file and failed reach the district's contacts and webhook (queued; returns at once)
    notices.nightly_notice(
        district_id=district_id,
        run_date=run_date,
        outcome=outcome.outcome,
        file_name=file_name,
        import_id=outcome.import_id,
    )
    with contextlib.suppress(OSError):
        remove_expired(settings=settings, district_id=district_id)
    log.info(
        "nightly sync",
        extra={
            "fields": {
                "event": "nightly.outcome",
                "district_id": district_id,
                "run_date": run_date,
                "outcome": outcome.outcome,
                "import_id": outcome.import_id,
            }
        },
    )
    return outcome


def _sync(
    engine: sa.Engine, settings: Settings, district_id: str, file_name: str, run_date: str, enqueue: Enqueue
) -> NightlyOutcome:
    path = district_sftp_dir(settings, district_id) / file_name
    if is_preview(file_name):  # a preview is only ever checked, when it is uploaded
        return NightlyOutcome(district_id, run_date, "no_file", detail=f"{file_name} is a preview file")
    try:
        info = path.lstat()
    except FileNotFoundError:
        info = None
    if info is None or not stat.S_ISREG(info.st_mode):
        return NightlyOutcome(district_id, run_date, "no_file", detail=f"no {file_name} in the SFTP folder")
    digest = _sha256(path)
    with Session(engine) as session:
        last_applied = session.exec(
            select(ImportRun)
            .where(
                ImportRun.district_id == district_id,
                ImportRun.status == "applied",
                col(ImportRun.dry_run).is_(False),
            )
            .order_by(col(ImportRun.finished_at).desc(), col(ImportRun.created_at).desc())
            .limit(1)
        ).first()
        if last_applied is not None and last_applied.sha256 == digest:
            return NightlyOutcome(
                district_id, run_date, "skipped", last_applied.id, "unchanged since the last applied import"
            )
        waiting = session.exec(
            select(ImportRun.id).where(
                ImportRun.district_id == district_id,
                ImportRun.sha256 == digest,
                col(ImportRun.status).in_(PENDING),
                col(ImportRun.dry_run).is_(False),
            )
        ).first()
    if waiting is not None:
        return NightlyOutcome(district_id, run_date, "pending", waiting, "the same file is already waiting")
    run = enqueue(
        engine=engine,
        settings=settings,
        district_id=district_id,
        source="nightly",
        src_path=path,
        filename=file_name,
        created_by="nightly",
    )
    return NightlyOutcome(district_id, run_date, "queued", str(run.id))


def run_nightly(
    *,
    engine: sa.Engine,
    settings: Settings,
    now: datetime | None = None,
    district_ids: Iterable[str] | None = None,
    due_only: bool = False,
    enqueue: Enqueue | None = None,
) -> list[NightlyOutcome]:
    """One pass. `due_only` (the scheduler, or a cron running every few minutes): only districts whose
    local nightly time has come. Otherwise (a cron once a night): every district, for its local date."""
    now = now or datetime.now(UTC)
    window = timedelta(hours=settings.nightly_catchup_hours) or timedelta(
        seconds=2 * settings.nightly_poll_seconds
    )
    todo: list[tuple[_DistrictPlan, str]] = []
    for plan in _plans(engine, district_ids):
        if due_only:
            run_date = due_date(
                timezone=plan.timezone, nightly_time=plan.nightly_time, now=now, window=window
            )
            if run_date is None:
                continue
        else:
            run_date = local_date(plan.timezone, now)
        todo.append((plan, run_date))
    claimed = _already_claimed(engine, [(p.district_id, d) for p, d in todo])
    outcomes = []
    chosen = enqueue or enqueue_file
    for plan, run_date in todo:
        if (plan.district_id, run_date) in claimed:
            if not due_only:
                outcomes.append(NightlyOutcome(plan.district_id, run_date, "already_done"))
            continue
        outcomes.append(
            sync_district(
                engine=engine,
                settings=settings,
                district_id=plan.district_id,
                file_name=plan.file_name,
                run_date=run_date,
                enqueue=chosen,
            )
        )
    return outcomes


class NightlyScheduler:
    """In-process scheduler for the single-machine setup (`roster-api serve` with ROSTER_RUN_SCHEDULER):
    a daemon thread that runs `run_nightly(due_only=True)` every ROSTER_NIGHTLY_POLL_SECONDS."""

    def __init__(
        self,
        *,
        engine: sa.Engine,
        settings: Settings,
        enqueue: Enqueue | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.enqueue = enqueue
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ticks = 0

    def tick(self) -> list[NightlyOutcome]:
        return run_nightly(
            engine=self.engine, settings=self.settings, now=self.clock(), due_only=True, enqueue=self.enqueue
        )

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # the database may be briefly away; try again next minute
                log.warning("nightly scheduler tick failed", extra={"fields": {"error": type(exc).__name__}})
            self.ticks += 1
            self._stop.wait(self.settings.nightly_poll_seconds)

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="nightly-scheduler", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


def outcome_line(outcome: NightlyOutcome) -> str:
    parts: list[Any] = [outcome.district_id, outcome.run_date, outcome.outcome]
    if outcome.import_id:
        parts.append(outcome.import_id)
    if outcome.detail:
        parts.append(f"({outcome.detail})")
    return " ".join(str(p) for p in parts)
