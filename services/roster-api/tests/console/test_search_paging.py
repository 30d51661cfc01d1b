"""The console's name search pages without counting every match: one row more than the page says
whether a next page exists."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from roster_api.console.web import PAGE_SIZE
from roster_api.models import Person
from roster_api.roster import service as roster


def _add_students(engine: sa.Engine, count: int) -> None:
    with Session(engine) as session:
        for n in range(count):
            session.add(
                Person(
                    district_id="d1",
                    id=f"p_page{n:03d}",
                    role="student",
                    first_name="Pat",
                    last_name=f"Pager{n:03d}",
                    active=n % 2 == 0,
                )
            )
        # another district's match never shows
        session.add(
            Person(district_id="d2", id="p_other", role="student", first_name="Pat", last_name="Pager999")
        )
        session.commit()


def test_name_search_pages_with_more_and_next(as_d1_admin: TestClient, roster_engine: sa.Engine) -> None:
    _add_students(roster_engine, PAGE_SIZE + 1)
    first = as_d1_admin.get("/console/d/d1/roster", params={"q": "pager", "role": "student"})
    assert first.status_code == 200
    assert f"More than {PAGE_SIZE} students found" in first.text
    assert first.text.count("/console/d/d1/people/student/p_page") == PAGE_SIZE
    assert f"offset={PAGE_SIZE}" in first.text  # the Next link
    last = as_d1_admin.get(
        "/console/d/d1/roster", params={"q": "pager", "role": "student", "offset": PAGE_SIZE}
    )
    assert last.status_code == 200
    assert f"{PAGE_SIZE + 1} students found" in last.text
    assert "p_page050" in last.text
    assert "p_page000" not in last.text
    assert "p_other" not in last.text
    assert f"offset={PAGE_SIZE * 2}" not in last.text
    exact = as_d1_admin.get("/console/d/d1/roster", params={"q": "pat pager000", "role": "student"})
    assert "1 student found" in exact.text
    assert "Next" not in exact.text


def _page_ids(engine: sa.Engine, q: str, offset: int) -> tuple[list[str], bool]:
    with Session(engine) as session:
        people, more = roster.search_people(
            session=session, district_id="d1", role="student", q=q, limit=10, offset=offset
        )
    return [p.id for p in people], more


def test_name_search_pages_by_last_then_first_name_and_lists_each_person_once(
    roster_engine: sa.Engine,
) -> None:
    """Last-name and first-name matches are fetched apart and merged: every page in order (case
    ignored), nobody twice (Pat Pager matches "pa" both ways), only the district's own."""
    _add_students(roster_engine, 30)
    with Session(roster_engine) as session:
        session.add(
            Person(district_id="d1", id="p_first", role="student", first_name="pager", last_name="Aa")
        )
        session.add(
            Person(district_id="d1", id="p_upper", role="student", first_name="Ann", last_name="PAGER015")
        )
        session.commit()
    expected = [
        "p_first",
        *[f"p_page{n:03d}" for n in range(15)],
        "p_upper",  # PAGER015 Ann before Pager015 Pat
        *[f"p_page{n:03d}" for n in range(15, 30)],
    ]
    pages = [_page_ids(roster_engine, "Pa", offset) for offset in (0, 10, 20, 30)]
    assert [ids for ids, _ in pages] == [expected[0:10], expected[10:20], expected[20:30], expected[30:]]
    assert [more for _, more in pages] == [True, True, True, False]
    assert _page_ids(roster_engine, "pager", 0)[0] == expected[:10]
    assert _page_ids(roster_engine, "pat pager02", 0) == ([f"p_page{n:03d}" for n in range(20, 30)], False)
    assert _page_ids(roster_engine, "Pager029, Pat", 0) == (["p_page029"], False)
    assert _page_ids(roster_engine, "nobody", 0) == ([], False)
    assert _page_ids(roster_engine, "p%", 0) == ([], False)  # LIKE's wildcards are plain characters


@pytest.mark.postgres
def test_name_search_reads_the_name_indexes(roster_engine: sa.Engine) -> None:
    """On PostgreSQL a last-name prefix is one range of the (lower last, lower first, id) index, in
    page order, and a first-name prefix is found through an index too: a query that no longer matched
    the indexed expressions (collation included) would read the district's rows instead."""
    if roster_engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's expression indexes")
    _add_students(roster_engine, 5)
    with roster_engine.begin() as conn:  # a district's worth of other names, counted
        conn.execute(
            sa.insert(Person),
            [
                {"district_id": "d1", "id": f"p_other{n:04d}", "role": "student", "last_name": f"Other{n}"}
                for n in range(2000)
            ],
        )
        conn.execute(sa.text("ANALYZE person"))
    with Session(roster_engine) as session:
        plans = []
        for branch in roster._name_branches("pag_r%"):
            query = (
                select(Person.id)
                .where(Person.district_id == "d1", Person.role == "student", branch)
                .order_by(*roster._SEARCH_ORDER)
                .limit(26)
            )
            sql = str(query.compile(roster_engine, compile_kwargs={"literal_binds": True}))
            plans.append("\n".join(row[0] for row in session.execute(sa.text(f"EXPLAIN {sql}"))))
        # psycopg prepares a query run 5 times; its generic plan could not use the indexes for LIKE $1
        roster.search_people(session=session, district_id="d1", role="student", q="pag", limit=5, offset=0)
        assert session.execute(sa.text("SHOW plan_cache_mode")).scalar() == "force_custom_plan"
    last_name, first_name = plans
    assert "ix_person_district_id_role_lower_last_first_id" in last_name
    assert "Sort" not in last_name  # the index gives the page order
    assert "ix_person_district_id_role_lower_first_name" in first_name
