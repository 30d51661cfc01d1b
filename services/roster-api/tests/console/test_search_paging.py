"""The console's name search pages without counting every match: one row more than the page says
whether a next page exists."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session

from roster_api.console.web import PAGE_SIZE
from roster_api.models import Person


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
