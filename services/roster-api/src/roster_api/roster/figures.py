"""A district's figures that read its whole roster and login history: seats used per product, active
people per role, and people with at least one successful login per product and role.

Counting them takes 0.5-1 s for a 170,000-student district on PostgreSQL (every account joined to its
person, every successful login), far over the console's 150 ms per page. So they are counted apart and
kept as one `district_figures` row: after each applied import (the import worker), for every district
that has none when the worker starts and goes idle, and after an overview that found the row missing or
older than a few minutes (once its response is sent). The overview reads the row and says when it was
counted, or that it is being counted: no overview counts while a person waits."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from roster_api.models import District, DistrictFigures, LoginAttempt, Person, utcnow
from roster_api.roster.service import seats_used

log = logging.getLogger("roster_api.figures")
# districts being recounted by this process: overviews opened together ask once
_counting: set[str] = set()
_counting_lock = threading.Lock()


@dataclass(frozen=True)
class Counts:
    seats_used: dict[str, int]  # product -> active students with an active account
    rostered: dict[str, int]  # role -> active people
    logged_in: dict[str, int]  # "product/role" -> people with at least one successful login
    counted_at: datetime


def count(*, session: Session, district_id: str) -> Counts:
    """The slow part: three queries over the whole district."""
    return Counts(
        seats_used=seats_used(session=session, district_id=district_id),
        rostered=_rostered(session, district_id),
        logged_in=_logged_in(session, district_id),
        counted_at=utcnow(),
    )


def stored(*, session: Session, district_id: str) -> Counts | None:
    row = session.get(DistrictFigures, district_id)
    if row is None:
        return None
    counts = row.counts
    return Counts(
        seats_used=dict(counts.get("seats_used", {})),
        rostered=dict(counts.get("rostered", {})),
        logged_in=dict(counts.get("logged_in", {})),
        counted_at=row.counted_at,
    )


def recount(*, session: Session, district_id: str) -> Counts:
    """Counts and keeps the district's figures (committing the session)."""
    counts = count(session=session, district_id=district_id)
    values = {"seats_used": counts.seats_used, "rostered": counts.rostered, "logged_in": counts.logged_in}
    row = session.get(DistrictFigures, district_id)
    if row is None:
        row = DistrictFigures(district_id=district_id)
    row.counts = values
    row.counted_at = counts.counted_at
    session.add(row)
    try:
        session.commit()
    except IntegrityError:  # another recount stored the district's first row meanwhile: as good
        session.rollback()
    return counts


def recount_quietly(engine: sa.Engine, district_id: str) -> None:
    """For after a response or an import: a failed recount leaves the older figures, logged. A recount
    of the district already running in this process is not started again."""
    with _counting_lock:
        if district_id in _counting:
            return
        _counting.add(district_id)
    try:
        with Session(engine, expire_on_commit=False) as session:
            recount(session=session, district_id=district_id)
    except Exception:
        log.exception("district figures not recounted", extra={"fields": {"district_id": district_id}})
    finally:
        with _counting_lock:
            _counting.discard(district_id)


def districts_without_figures(*, session: Session) -> list[str]:
    """Districts never counted: every district right after the deploy that added the figures, and a
    district created since that nobody has opened."""
    rows = session.exec(
        select(District.id)
        .outerjoin(DistrictFigures, col(DistrictFigures.district_id) == col(District.id))
        .where(col(DistrictFigures.district_id).is_(None))
        .order_by(col(District.id))
    ).all()
    return list(rows)


def _rostered(session: Session, district_id: str) -> dict[str, int]:
    rows = session.exec(
        select(Person.role, func.count())
        .where(Person.district_id == district_id, col(Person.active).is_(True))
        .group_by(col(Person.role))
    ).all()
    return {role: int(n) for role, n in rows}


def _logged_in(session: Session, district_id: str) -> dict[str, int]:
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
    return {f"{product}/{role}": int(n) for product, role, n in rows}
