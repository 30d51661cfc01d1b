"""The overview's readiness checklist: what a district needs before students can log in, and how the
last weeks went. Each figure is one indexed query scoped by district, except the counts over the whole
district, which are kept apart (roster.figures)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, func, select

from roster_api.importing import service as imports
from roster_api.intake import credentials
from roster_api.models import District, ImportRun, LoginAttempt, utcnow
from roster_api.roster import figures as district_figures
from roster_api.roster import service as roster
from roster_api.roster.schemas import SeatUse

FAILURE_WINDOW_DAYS = 7
# Seats used and the logged-in shares count a whole district's accounts and logins (0.5-1 s for
# 170,000 students): the overview shows the district's kept figures (roster.figures) and has them
# counted again, after its response, when they are older than this or than the last applied import.
FIGURES_SECONDS = 300.0

Later = Callable[..., Any]


@dataclass(frozen=True)
class Figures:
    seats: list[SeatUse]
    logged_in: list[dict[str, Any]]
    counted_at: datetime | None  # None: being counted (the district's first overview)


@dataclass
class Check:
    label: str
    ok: bool
    detail: str
    link: str | None = None


@dataclass
class Readiness:
    checks: list[Check]
    seats: list[SeatUse]
    last_import: ImportRun | None
    counted_at: datetime | None
    logged_in: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[str, int]] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return all(c.ok for c in self.checks)


def _logged_in(counts: district_figures.Counts, products: list[str]) -> list[dict[str, Any]]:
    """Per product and role: the share of rostered people with at least one successful login."""
    result = []
    for product in products:
        for role in ("student", "teacher"):
            total = counts.rostered.get(role, 0)
            count = min(counts.logged_in.get(f"{product}/{role}", 0), total)
            pct = round(100 * count / total) if total else 0
            result.append({"product": product, "role": role, "count": count, "total": total, "pct": pct})
    return result


def _failures(session: Session, district_id: str) -> list[tuple[str, int]]:
    since = utcnow() - timedelta(days=FAILURE_WINDOW_DAYS)
    rows = session.exec(
        select(LoginAttempt.reason, func.count())
        .where(
            LoginAttempt.district_id == district_id,
            col(LoginAttempt.created_at) >= since,
            LoginAttempt.outcome == "failure",
        )
        .group_by(col(LoginAttempt.reason))
        .order_by(func.count().desc())
    ).all()
    return [(reason or "unknown", int(n)) for reason, n in rows]


def figures(*, session: Session, district_id: str, applied: datetime | None, later: Later) -> Figures:
    """The kept figures. None kept yet (a district's first overview): the licenses alone, marked as
    being counted, and the count left to `later` (after the response), like stale ones (older than
    FIGURES_SECONDS or than the last applied import), which are shown meanwhile."""
    counts = district_figures.stored(session=session, district_id=district_id)
    if counts is None or counts.counted_at < max(
        utcnow() - timedelta(seconds=FIGURES_SECONDS), applied or counts.counted_at
    ):
        later(district_figures.recount_quietly, session.get_bind(), district_id)
    seats = roster.seats_of(
        session=session, district_id=district_id, used=counts.seats_used if counts else {}
    ).products
    if counts is None:
        return Figures(seats=seats, logged_in=[], counted_at=None)
    products = [s.product.value for s in seats]
    return Figures(seats=seats, logged_in=_logged_in(counts, products), counted_at=counts.counted_at)


def _seats_detail(counted: Figures) -> str:
    if not counted.seats:
        return "No product licensed"
    if counted.counted_at is None:
        licensed = ", ".join(f"{s.product.value}: {s.licensed} seats" for s in counted.seats)
        return f"{licensed} (seats used being counted)"
    return ", ".join(f"{s.product.value}: {s.used} of {s.licensed} seats" for s in counted.seats)


def readiness(*, session: Session, district: District, later: Later) -> Readiness:
    """`later(fn, *args)` runs fn after the response (FastAPI's BackgroundTasks.add_task)."""
    base = f"/console/d/{district.id}"
    applied, _ = _last_applied(session, district.id)
    counted = figures(session=session, district_id=district.id, applied=applied, later=later)
    seats = counted.seats
    live_sftp = [
        c
        for c in credentials.list_credentials(session=session, district_id=district.id)
        if c.revoked_at is None
    ]
    recent, _ = imports.list_imports(session=session, district_id=district.id, limit=1, offset=0)
    last = recent[0] if recent else None
    checks = [
        Check(
            "Products licensed",
            bool(seats),
            _seats_detail(counted),
            f"{base}/settings",
        ),
        Check(
            "Clever district linked",
            district.clever_district_id is not None,
            district.clever_district_id or "Not linked: students cannot log in with Clever yet",
            f"{base}/settings",
        ),
        Check(
            "SFTP login issued",
            bool(live_sftp),
            f"User {live_sftp[0].username}" if live_sftp else "No SFTP login yet",
            f"{base}/settings",
        ),
        Check(
            "A roster applied",
            applied is not None,
            f"Last applied {applied:%Y-%m-%d %H:%M} UTC" if applied else "No roster applied yet",
            f"{base}/upload",
        ),
    ]
    return Readiness(
        checks=checks,
        seats=seats,
        last_import=last,
        counted_at=counted.counted_at,
        logged_in=counted.logged_in,
        failures=_failures(session, district.id),
    )


def _last_applied(session: Session, district_id: str) -> tuple[Any, None]:
    finished = session.exec(
        select(ImportRun.finished_at)
        .where(ImportRun.district_id == district_id, ImportRun.status == "applied")
        .order_by(col(ImportRun.created_at).desc())
        .limit(1)
    ).first()
    return finished, None
