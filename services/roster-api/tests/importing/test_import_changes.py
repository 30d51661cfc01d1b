"""The listed changes of an import: the diff's items against an independent reading of two rosters
(property test on random rosters and random edits), their CSV, and their storage on SQLite and
PostgreSQL."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roster_api.db import session_scope
from roster_api.importing import changes, uploads
from roster_api.importing.diff import (
    CREATED_LISTED,
    ITEM_ENTITY,
    ChangeItem,
    Current,
    Diff,
    LicenseRow,
    Links,
    PersonRow,
    Policy,
    diff,
)
from roster_api.importing.normalize import Roster, normalize
from roster_api.importing.parse import parse_bytes
from roster_api.models import ImportRun, utcnow
from roster_api.settings import Settings

from .import_rows import csv_bytes, row, student

POLICY = Policy(licenses={"rocketlit": LicenseRow(1000, False)})
NAMES = ["Ana", "José", "Nguyễn", "=HYPERLINK(1)", "+1", "O'Brien", "Zoë", "Li"]
GRADES = ["1", "3", "4", "12"]


@dataclass(frozen=True)
class Kid:
    n: int
    first: str
    grade: str
    classes: frozenset[int]


@dataclass(frozen=True)
class Book:
    """A small district: class n is in school n % 2, named by `class_names`."""

    kids: tuple[Kid, ...]
    class_names: tuple[str, ...]
    school_names: tuple[str, ...]

    def rows(self) -> list[dict[str, str]]:
        out = []
        for kid in self.kids:
            for c in sorted(kid.classes):
                out.append(
                    row(
                        school_id=f"sch-{c % 2}",
                        school_name=self.school_names[c % 2],
                        class_id=f"cls-{c}",
                        class_name=self.class_names[c],
                        student_first_name=kid.first,
                        student_last_name="Doe",
                        student_clever_id=f"{kid.n:024x}",
                        student_email=f"kid{kid.n}@example.org",
                        student_grade_level=kid.grade,
                    )
                )
        return out

    def roster(self) -> Roster:
        return normalize(parse_bytes(csv_bytes(self.rows())))


kids = st.builds(
    Kid,
    n=st.integers(1, 12),
    first=st.sampled_from(NAMES),
    grade=st.sampled_from(GRADES),
    classes=st.frozensets(st.integers(0, 3), min_size=1, max_size=3),
)
books = st.builds(
    Book,
    kids=st.lists(kids, min_size=1, max_size=8, unique_by=lambda k: k.n).map(tuple),
    class_names=st.tuples(*[st.sampled_from(["Math", "Art", "=SUM(A1)", "Science"])] * 4),
    school_names=st.tuples(st.sampled_from(["Lincoln", "Hamilton"]), st.sampled_from(["Adams", "-Kent"])),
)


def stored(roster: Roster) -> Current:
    """The district as a first import of `roster` leaves it (from the plan that import writes)."""
    plan = diff(roster, Current(), POLICY).plan
    current = Current()
    current.schools = {sid: (name, True) for sid, name in plan.schools_new}
    current.classes = {cid: (sid, name, True) for cid, sid, name in plan.classes_new}
    current.people = [PersonRow(*values[:8], True, values[8]) for values in plan.people_new]
    current.class_teachers = Links.of(dict.fromkeys(plan.class_teachers_new, True))
    current.enrollments = Links.of(dict.fromkeys(plan.enrollments_new, True))
    current.accounts = {(p, product): (a, True) for p, product, a in plan.accounts_new}
    return current


def csv_rows(result: Diff) -> list[dict[str, str]]:
    text = "".join(changes.csv_lines(changes.public_rows(result)))
    return list(csv.DictReader(io.StringIO(text)))


def safe(value: str) -> str:
    return "'" + value if value.startswith(("=", "+", "-", "@")) else value


def expected(before: Book, after: Book) -> set[tuple[str, str, str, str]]:
    """(entity, change, id, changes) of schools, classes, students and enrollments, read from the two
    books directly."""
    out: set[tuple[str, str, str, str]] = set()

    def compare(entity: str, old: dict[str, dict[str, str]], new: dict[str, dict[str, str]]) -> None:
        for key in new.keys() - old.keys():
            values = "; ".join(f"{f}: {v}" for f, v in new[key].items() if v)
            out.add((entity, "created", key, values))
        for key in old.keys() - new.keys():
            out.add((entity, "deactivated", key, ""))
        for key in old.keys() & new.keys():
            moved = [f"{f}: {old[key][f]} -> {v}" for f, v in new[key].items() if old[key][f] != v]
            if moved:
                out.add((entity, "updated", key, "; ".join(moved)))

    def schools(book: Book) -> dict[str, dict[str, str]]:
        used = {c % 2 for kid in book.kids for c in kid.classes}
        return {f"sch-{s}": {"name": book.school_names[s]} for s in used}

    def classes(book: Book) -> dict[str, dict[str, str]]:
        used = {c for kid in book.kids for c in kid.classes}
        return {f"cls-{c}": {"school_id": f"sch-{c % 2}", "name": book.class_names[c]} for c in used}

    def students(book: Book) -> dict[str, dict[str, str]]:
        return {
            f"{k.n:024x}": {
                "clever_id": f"{k.n:024x}",
                "email": f"kid{k.n}@example.org",
                "first_name": k.first,
                "last_name": "Doe",
                "grade": k.grade,
            }
            for k in book.kids
        }

    def enrollments(book: Book) -> dict[str, dict[str, str]]:
        return {f"cls-{c} / {k.n:024x}": {} for k in book.kids for c in k.classes}

    compare("school", schools(before), schools(after))
    compare("class", classes(before), classes(after))
    compare("student", students(before), students(after))
    compare("enrollment", enrollments(before), enrollments(after))
    return {(e, k, i, safe(c) if c else c) for e, k, i, c in out}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=books, after=books)
def test_changes_csv_equals_the_diff_on_random_rosters(before: Book, after: Book) -> None:
    result = diff(after.roster(), stored(before.roster()), POLICY)
    lines = csv_rows(result)
    got = {
        (r["entity"], r["change"], r["id"], r["changes"])
        for r in lines
        if r["entity"] in {"school", "class", "student", "enrollment"}
    }
    assert got == expected(before, after)
    # one line per counted change (all are listed at this size), every cell formula-safe
    for name, counts in result.changes_report().items():
        entity = ITEM_ENTITY[name]
        assert isinstance(counts, dict)
        for kind in changes.KINDS:
            listed = sum(1 for r in lines if r["entity"] == entity and r["change"] == kind)
            assert listed == counts[kind], (entity, kind)
    assert not any(cell.startswith(("=", "+", "-", "@")) for r in lines for cell in r.values())


def test_created_rows_beyond_the_limit_are_counted_not_listed() -> None:
    n = CREATED_LISTED + 5
    rows = [
        row(student_clever_id=f"{i:024x}", student_email=f"k{i}@example.org", student_first_name=f"K{i}")
        for i in range(1, n + 1)
    ]
    result = diff(normalize(parse_bytes(csv_bytes(rows))), Current(), POLICY)
    assert result.changes["students"].created == n
    assert len(result.changes["students"].items) == CREATED_LISTED
    report = {"changes": result.changes_report()}
    notes = changes.unlisted(report)
    assert {"entity": "student", "kind": "created", "listed": CREATED_LISTED, "total": n} in notes
    assert changes.unlisted(report, kind="updated") == []
    text = "".join(changes.csv_lines(changes.public_rows(result), notes))
    last = list(csv.reader(io.StringIO(text)))[-1]
    assert last[:2] == ["account", "created"] or last[:2] == ["student", "created"]
    assert f"first {CREATED_LISTED:,} listed, all {n:,} counted" in text


def test_an_update_lists_each_changed_field_with_old_and_new() -> None:
    before = normalize(parse_bytes(csv_bytes([row(student_first_name="Nguyễn", student_grade_level="3")])))
    after = normalize(parse_bytes(csv_bytes([row(student_first_name="Nguy?n", student_grade_level="4")])))
    result = diff(after, stored(before), POLICY)
    (item,) = result.changes["students"].items
    assert (item.kind, item.line, item.name) == ("updated", 2, "Nguy?n Perlstein")
    assert item.fields == (("first_name", "Nguyễn", "Nguy?n"), ("grade", "3", "4"))
    student = next(r for r in changes.public_rows(result) if r["entity"] == "student")
    assert changes.describe(student["fields"]) == "first_name: Nguyễn -> Nguy?n; grade: 3 -> 4"


# --- storage ------------------------------------------------------------------------------------


def _district_diff() -> Diff:
    before = normalize(
        parse_bytes(
            csv_bytes([row(student_first_name="Zoë"), row(student_first_name="Zoë", class_id="cls-2")])
        )
    )
    after = normalize(parse_bytes(csv_bytes([row(student_first_name="Zoé", class_name="=cmd")])))
    return diff(after, stored(before), POLICY)


def test_stored_changes_read_back_in_order_filtered_and_replaced(roster_engine: sa.Engine) -> None:
    result = _district_diff()
    want = list(changes.public_rows(result))
    assert {(r["entity"], r["kind"]) for r in want} >= {
        ("student", "updated"),
        ("enrollment", "deactivated"),
    }
    with roster_engine.begin() as conn:
        assert changes.store(conn, import_id="imp_1", district_id="d1", diff=result) == len(want)
        # another import's rows stay apart
        changes.store(conn, import_id="imp_2", district_id="d1", diff=diff(Roster(), Current(), POLICY))
    with roster_engine.connect() as conn:
        items, total = changes.page(conn, district_id="d1", import_id="imp_1")
        assert (items, total) == (want, len(want))
        assert list(changes.iter_rows(conn, district_id="d1", import_id="imp_1")) == want
        students, n = changes.page(
            conn, district_id="d1", import_id="imp_1", entity="student", kind="updated"
        )
        assert n == 1
        assert students[0]["fields"] == [{"field": "first_name", "old": "Zoë", "new": "Zoé"}]
        second, _ = changes.page(conn, district_id="d1", import_id="imp_1", limit=1, offset=1)
        assert second == want[1:2]
        assert changes.page(conn, district_id="d2", import_id="imp_1") == ([], 0)
    with roster_engine.begin() as conn:  # an approved hold runs again: its list is replaced
        changes.store(conn, import_id="imp_1", district_id="d1", diff=diff(Roster(), Current(), POLICY))
    with roster_engine.connect() as conn:
        assert changes.page(conn, district_id="d1", import_id="imp_1") == ([], 0)


@pytest.mark.parametrize("rows", [0, 7_000])
def test_store_writes_every_row(roster_engine: sa.Engine, rows: int) -> None:
    """Past one read batch of iter_rows (5,000) too."""
    result = diff(Roster(), Current(), POLICY)
    result.changes["enrollments"].items.extend(
        ChangeItem("enrollment", "deactivated", f"cls-{i} / s", "A / B", None) for i in range(rows)
    )
    with roster_engine.begin() as conn:
        assert changes.store(conn, import_id="imp_1", district_id="d1", diff=result) == rows
    with roster_engine.connect() as conn:
        read = list(changes.iter_rows(conn, district_id="d1", import_id="imp_1"))
    assert [r["id"] for r in read] == [f"cls-{i} / s" for i in range(rows)]


def test_changes_go_with_the_uploads_after_retention(
    roster_engine: sa.Engine, roster_settings: Settings
) -> None:
    """They hold names and emails: kept no longer than the file they came from."""
    result = _district_diff()
    with session_scope(roster_engine) as session:
        for import_id, status in (("imp_old", "applied"), ("imp_held", "held")):
            session.add(
                ImportRun(id=import_id, district_id="d1", status=status, source="api", created_at=utcnow())
            )
    with roster_engine.begin() as conn:
        for import_id in ("imp_old", "imp_held"):
            changes.store(conn, import_id=import_id, district_id="d1", diff=result)
    now = utcnow()
    uploads.delete_expired_uploads(engine=roster_engine, settings=roster_settings, now=now)
    with roster_engine.connect() as conn:  # nothing is old yet
        assert changes.page(conn, district_id="d1", import_id="imp_old")[1] > 0
    later = now + timedelta(days=roster_settings.upload_retention_days + 1)
    uploads.delete_expired_uploads(engine=roster_engine, settings=roster_settings, now=later)
    with roster_engine.connect() as conn:
        assert changes.page(conn, district_id="d1", import_id="imp_old") == ([], 0)
        assert changes.page(conn, district_id="d1", import_id="imp_held")[1] > 0  # still to be decided


def test_deactivated_links_and_accounts_beyond_the_limit_are_counted_not_listed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file holding one school by mistake deactivates every other enrollment: listed up to a limit."""
    monkeypatch.setattr("roster_api.importing.diff.LINKS_LISTED", 3)
    before = normalize(parse_bytes(csv_bytes([student(n) for n in range(1, 11)])))
    after = normalize(parse_bytes(csv_bytes([student(1)])))
    result = diff(after, stored(before), POLICY)
    assert result.changes["enrollments"].deactivated == 9
    assert len(result.changes["enrollments"].items) == 3
    assert result.changes["accounts"].deactivated == 9
    assert len(result.changes["accounts"].items) == 3
    assert len(result.changes["students"].items) == 9  # people: every one
    notes = changes.unlisted({"changes": result.changes_report()})
    assert {"entity": "enrollment", "kind": "deactivated", "listed": 3, "total": 9} in notes
    assert {"entity": "account", "kind": "deactivated", "listed": 3, "total": 9} in notes
    assert not [n for n in notes if n["entity"] == "student"]
    text = "".join(changes.csv_lines(changes.public_rows(result), notes))
    assert "enrollment,deactivated,,first 3 listed, all 9 counted" in text.replace('"', "")
