"""Class teachers and enrollments compared as they are read from the database (links.StoredLinks: a
stream, one person at a time) give exactly what the in-memory comparison gives (links.Links), which is
itself checked against the set algebra of pairs in test_import_diff.py."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roster_api.importing.diff import Current, diff
from roster_api.importing.links import Links, StoredLinks
from roster_api.importing.stored_accounts import StoredAccounts

from .test_import_changes import POLICY, Book, books, stored

DISTRICT = "d1"
CLASSES = ["c1", "c2", "c3", "c5", "cls 'x'", 'q"uote', "Ünïcode", "back\\slash", "tab\there", "unit\x1fsep"]
PEOPLE = ["p1", "p2", "p3", "p4"]
pairs = st.tuples(st.sampled_from(CLASSES), st.sampled_from(PEOPLE))
DB_HYPOTHESIS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _store(conn: sa.Connection, table: str, links: dict[tuple[str, str], bool], district: str) -> None:
    conn.execute(sa.text(f"DELETE FROM {table} WHERE district_id = :d"), {"d": district})  # noqa: S608
    if links:
        conn.execute(
            sa.text(
                f"INSERT INTO {table} (district_id, class_id, person_id, active) "  # noqa: S608
                "VALUES (:d, :c, :p, :a)"
            ),
            [{"d": district, "c": c, "p": p, "a": a} for (c, p), a in links.items()],
        )


def _wanted(target: set[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for class_id, person_id in sorted(target):
        grouped.setdefault(person_id, []).append(class_id)
    return grouped


@DB_HYPOTHESIS
@given(
    target=st.sets(pairs),
    links=st.dictionaries(pairs, st.booleans()),
    others=st.dictionaries(pairs, st.booleans(), max_size=4),
)
def test_the_database_compares_links_as_memory_does(
    roster_engine: sa.Engine,
    target: set[tuple[str, str]],
    links: dict[tuple[str, str], bool],
    others: dict[tuple[str, str], bool],
) -> None:
    with roster_engine.connect() as conn:
        _store(conn, "enrollment", links, DISTRICT)
        _store(conn, "enrollment", others, "other")  # same class and person ids: no part in it
        store = StoredLinks(conn, "enrollment", DISTRICT)
        assert bool(store) == bool(links)
        assert store.active_count() == sum(links.values())
        assert store.compare(_wanted(target)) == Links.of(links).compare(_wanted(target))
        # twice in one transaction (class teachers and enrollments each stage once per import)
        assert store.compare(_wanted(target)) == Links.of(links).compare(_wanted(target))
        conn.rollback()


@DB_HYPOTHESIS
@given(before=books, after=books)
def test_an_import_diffs_the_same_against_stored_and_loaded_rows(
    roster_engine: sa.Engine, before: Book, after: Book
) -> None:
    """The whole diff (plan, counts, samples, listed changes, hold) is the same whether the district's
    class teachers, enrollments and accounts are in memory or read from the database as it goes."""
    loaded = stored(before.roster())
    assert isinstance(loaded.class_teachers, Links)
    assert isinstance(loaded.enrollments, Links)
    with roster_engine.connect() as conn:
        for table, links in (("section_teacher", loaded.class_teachers), ("enrollment", loaded.enrollments)):
            flat = {(c, p): True for p, classes in links.active.items() for c in classes}
            _store(conn, table, flat | dict.fromkeys(links.inactive, False), DISTRICT)
        assert isinstance(loaded.accounts, dict)
        conn.execute(sa.text("DELETE FROM account WHERE district_id = :d"), {"d": DISTRICT})
        conn.execute(
            sa.text(
                "INSERT INTO account (district_id, person_id, product, account_id, active, created_at, "
                "updated_at) VALUES (:d, :p, :product, :a, :on, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            ),
            [
                {"d": DISTRICT, "p": p, "product": product, "a": a, "on": on}
                for (p, product), (a, on) in loaded.accounts.items()
            ],
        )
        in_db = dataclasses.replace(
            loaded,
            class_teachers=StoredLinks(conn, "section_teacher", DISTRICT),
            enrollments=StoredLinks(conn, "enrollment", DISTRICT),
            accounts=StoredAccounts(conn, DISTRICT),
        )
        roster = after.roster()
        from_db = diff(roster, in_db, POLICY, person_id=_counter("p_"), account_id=_counter("acct_"))
        from_memory = diff(roster, loaded, POLICY, person_id=_counter("p_"), account_id=_counter("acct_"))
        conn.rollback()
    assert from_db.plan == from_memory.plan
    assert from_db.changes == from_memory.changes
    assert from_db.hold_reasons == from_memory.hold_reasons


def _counter(prefix: str) -> Callable[[], str]:
    ids = itertools.count()
    return lambda: f"{prefix}{next(ids):06d}"


def test_only_link_tables_are_compared(roster_engine: sa.Engine) -> None:
    with roster_engine.connect() as conn, pytest.raises(ValueError, match="person"):
        StoredLinks(conn, "person", DISTRICT)


def test_an_empty_district_has_nothing_stored(roster_engine: sa.Engine) -> None:
    with roster_engine.connect() as conn:
        current = Current(enrollments=StoredLinks(conn, "enrollment", "nobody"))
        assert not current.enrollments
        assert current.enrollments.active_count() == 0
