"""Readiness warnings: what stops the people of an import from using a product even though the file is
fine. Every report with a diff carries them (`report["readiness"]`), and so does the SFTP results file.

Each warning is {code, message, hint, count, rows}. `message` and `hint` hold no personal data, so a
notice (email, webhook) may quote them; `rows` (non-UTF-8 files only) holds the file's line and the
decoded name, for the API user and the district's own results folder, never for a log or an email."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from roster_api.importing.diff import Diff
from roster_api.importing.normalize import Roster
from roster_api.models import District, License

NAME_FIELDS = ("first_name", "last_name")
ROWS_SHOWN = 20
PRODUCT_LABELS = {"rocketlit": "RocketLit", "innerorbit": "InnerOrbit"}


@dataclass(frozen=True)
class DistrictState:
    licensed: tuple[str, ...]  # products with at least one seat
    clever_linked: bool


def load(conn: sa.Connection, district_id: str) -> DistrictState:
    licenses = License.__table__  # type: ignore[attr-defined]
    districts = District.__table__  # type: ignore[attr-defined]
    licensed = conn.execute(
        sa.select(licenses.c.product)
        .where(licenses.c.district_id == district_id, licenses.c.seats > 0)
        .order_by(licenses.c.product)
    ).scalars()
    clever = conn.execute(
        sa.select(districts.c.clever_district_id).where(districts.c.id == district_id)
    ).scalar_one_or_none()
    return DistrictState(tuple(licensed), bool(clever))


def check(
    conn: sa.Connection, *, district_id: str, roster: Roster, diff: Diff | None
) -> list[dict[str, Any]]:
    """The district's state read in the caller's transaction, then `warnings`."""
    return warnings(load(conn, district_id), roster, diff)


def warnings(state: DistrictState, roster: Roster, diff: Diff | None) -> list[dict[str, Any]]:
    """`diff` None: a file rejected before it was compared (what can be said without it)."""
    people = len(roster.students) + len(roster.teachers)
    out: list[dict[str, Any]] = []
    if not state.licensed:
        out.append(
            _warning(
                "NO_LICENSE",
                "No product is licensed for this district, so nobody gets an account: "
                f"{_people(people)} in the roster, and none can open a product yet.",
                "Ask RocketLit to add the district's license; accounts are made at the next import.",
                people,
            )
        )
    if not state.clever_linked:
        out.append(
            _warning(
                "NO_CLEVER_LINK",
                "This district is not linked to a Clever district, so nobody can log in with Clever yet.",
                "Ask RocketLit support to link your Clever district.",
                people,
            )
        )
    if diff is not None:
        out += _seats(diff.seats)
    if diff is not None and diff.email_only:
        out.append(
            _warning(
                "MATCHED_BY_EMAIL",
                f"{_people(diff.email_only)} will be matched by email at their first login (the file "
                "has no Clever ID for them).",
                "Add their Clever IDs to the file, so each login finds the right person for certain.",
                diff.email_only,
            )
        )
    if roster.encoding != "utf-8":
        out.append(_not_utf8(roster, diff))
    return out


def _people(n: int) -> str:
    return "1 person" if n == 1 else f"{n:,} people"


def _warning(
    code: str, message: str, hint: str, count: int, rows: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {"code": code, "message": message, "hint": hint, "count": count, "rows": rows or []}


def _seats(seats: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for product, info in sorted(seats.items()):
        used, licensed = int(info.get("used") or 0), int(info.get("licensed") or 0)
        if used <= licensed:
            continue
        name = PRODUCT_LABELS.get(product, product)
        out.append(
            _warning(
                "SEATS_EXCEEDED",
                f"{used:,} students need {name} seats but the district has {licensed:,} ({used - licensed:,} "
                "over).",
                "Remove students from the file, or ask RocketLit to raise the seat count.",
                used - licensed,
            )
        )
    return out


def _not_utf8(roster: Roster, diff: Diff | None) -> dict[str, Any]:
    """The names this file changes (most likely because of how it was read), else the names in it that
    have letters outside plain ASCII (new people, nothing stored to compare with): for a person to check."""
    changed = list(_changed_names(diff)) if diff is not None else []
    if changed:
        message = (
            f"The file is not UTF-8 (it was read as {roster.encoding}), and it changes {len(changed):,} "
            "first or last names: letters with accents may have been read wrong."
        )
        rows = changed
    else:
        rows = list(_accented_names(roster))
        message = (
            f"The file is not UTF-8 (it was read as {roster.encoding}): check that names with accents "
            "read right."
        )
    return _warning(
        "NOT_UTF8",
        message,
        'Save the file as "CSV UTF-8" and send it again if any name below is wrong.',
        len(rows),
        rows[:ROWS_SHOWN],
    )


def _changed_names(diff: Diff) -> Iterable[dict[str, Any]]:
    for name in ("teachers", "students"):
        for item in diff.changes[name].items:
            if item.kind not in ("updated", "reactivated"):
                continue
            for field, old, new in item.fields:
                if field in NAME_FIELDS:
                    yield {"line": item.line, "field": field, "old": old, "new": new}


def _accented_names(roster: Roster) -> Iterable[dict[str, Any]]:
    shown = 0
    for people in (roster.teachers, roster.students):
        for person in people.values():
            for field in NAME_FIELDS:
                value: str = getattr(person, field)
                if not value.isascii():
                    yield {"line": person.line, "field": field, "old": None, "new": value}
                    shown += 1
                    if shown >= ROWS_SHOWN:
                        return
