"""The overview's readiness checklist: what a district needs before students can log in, and how the
last weeks went. Reads only; each figure is one indexed query scoped by district."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from roster_api.importing import service as imports
from roster_api.intake import credentials
from roster_api.models import District, ImportRun, LoginAttempt, Person, utcnow
from roster_api.roster import service as roster
from roster_api.roster.schemas import SeatUse

FAILURE_WINDOW_DAYS = 7
# Seats used and the logged-in shares count a whole district's accounts and logins (seconds for 170,000
# students): they are kept per district for this long, so the overview stays fast; the page says when
# they were counted.
FIGURES_SECONDS = 300.0


@dataclass(frozen=True)
class Figures:
    seats: list[SeatUse]
    logged_in: list[dict[str, Any]]
    counted_at: datetime


class FiguresCache:
    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, Figures]] = {}
        self._lock = threading.Lock()

    def get(self, district_id: str) -> Figures | None:
        with self._lock:
            entry = self._entries.get(district_id)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, district_id: str, figures: Figures) -> None:
        with self._lock:
            if len(self._entries) > 1000:
                self._entries.clear()
            self._entries[district_id] = (time.monotonic() + FIGURES_SECONDS, figures)

    def forget(self, district_id: str) -> None:
        with self._lock:
            self._entries.pop(district_id, None)


def figures_cache(state: Any) -> FiguresCache:
    """The app's cache (one per app, so apps and tests never share figures)."""
    cache = getattr(state, "console_figures", None)
    if not isinstance(cache, FiguresCache):
        cache = FiguresCache()
        state.console_figures = cache
    return cache


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
    counted_at: datetime
    logged_in: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[str, int]] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return all(c.ok for c in self.checks)


def _rostered(session: Session, district_id: str) -> dict[str, int]:
    rows = session.exec(
        select(Person.role, func.count())
        .where(Person.district_id == district_id, col(Person.active).is_(True))
        .group_by(col(Person.role))
    ).all()
    return {role: int(n) for role, n in rows}


def _logged_in(session: Session, district_id: str, products: list[str]) -> list[dict[str, Any]]:
    """Per product and role: rostered people with at least one successful login."""
    rostered = _rostered(session, district_id)
    rows = session.exec(
        select(
            LoginAttempt.product,
            LoginAttempt.clever_role,
            func.count(sa.distinct(col(LoginAttempt.person_id))),
        )
        .where(
            LoginAttempt.district_id == district_id,
            LoginAttempt.outcome == "success",
            col(LoginAttempt.person_id).is_not(None),
        )
        .group_by(col(LoginAttempt.product), col(LoginAttempt.clever_role))
    ).all()
    seen = {(product, role): int(n) for product, role, n in rows}
    result = []
    for product in products:
        for role in ("student", "teacher"):
            total = rostered.get(role, 0)
            count = min(seen.get((product, role), 0), total)
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


def figures(*, session: Session, district_id: str, cache: FiguresCache) -> Figures:
    cached = cache.get(district_id)
    if cached is not None:
        return cached
    seats = roster.seats(session=session, district_id=district_id).products
    products = [s.product.value for s in seats]
    fresh = Figures(seats=seats, logged_in=_logged_in(session, district_id, products), counted_at=utcnow())
    cache.put(district_id, fresh)
    return fresh


def readiness(*, session: Session, district: District, cache: FiguresCache) -> Readiness:
    base = f"/console/d/{district.id}"
    counted = figures(session=session, district_id=district.id, cache=cache)
    seats = counted.seats
    live_sftp = [
        c
        for c in credentials.list_credentials(session=session, district_id=district.id)
        if c.revoked_at is None
    ]
    recent, _ = imports.list_imports(session=session, district_id=district.id, limit=1, offset=0)
    last = recent[0] if recent else None
    applied, _ = _last_applied(session, district.id)
    checks = [
        Check(
            "Products licensed",
            bool(seats),
            ", ".join(f"{s.product.value}: {s.used} of {s.licensed} seats" for s in seats)
            or "No product licensed",
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
