"""Readiness warnings: computed from the district's state and the diff (pure), the state read on SQLite
and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

from roster_api.db import session_scope
from roster_api.importing import readiness
from roster_api.importing.diff import Current, LicenseRow, Links, PersonRow, Policy, diff
from roster_api.importing.normalize import Roster, normalize
from roster_api.importing.parse import parse_bytes
from roster_api.importing.readiness import DistrictState
from roster_api.models import District, License

from .import_rows import HEADER, csv_text, row, student

READY = DistrictState(licensed=("rocketlit",), clever_linked=True)
POLICY = Policy(licenses={"rocketlit": LicenseRow(100, False)})


def roster(rows: list[dict[str, str]], encoding: str = "utf-8") -> Roster:
    return normalize(parse_bytes(csv_text(rows).encode(encoding)))


def stored(r: Roster) -> Current:
    plan = diff(r, Current(), POLICY).plan
    current = Current()
    current.schools = {sid: (name, True) for sid, name in plan.schools_new}
    current.classes = {cid: (sid, name, True) for cid, sid, name in plan.classes_new}
    current.people = [PersonRow(*values[:8], True, values[8]) for values in plan.people_new]
    current.class_teachers = Links.of(dict.fromkeys(plan.class_teachers_new, True))
    current.enrollments = Links.of(dict.fromkeys(plan.enrollments_new, True))
    current.accounts = {(p, product): (a, True) for p, product, a in plan.accounts_new}
    return current


def codes(warnings: list[dict[str, object]]) -> list[object]:
    return [w["code"] for w in warnings]


def test_a_ready_district_with_a_clean_file_has_no_warnings() -> None:
    r = roster([row(), student(2)])
    assert readiness.warnings(READY, r, diff(r, Current(), POLICY)) == []


def test_no_license_and_no_clever_link_say_nobody_can_use_it_yet() -> None:
    r = roster([row(), student(2)])
    found = readiness.warnings(DistrictState((), False), r, diff(r, Current(), Policy(licenses={})))
    assert codes(found) == ["NO_LICENSE", "NO_CLEVER_LINK"]
    assert "nobody gets an account" in str(found[0]["message"])
    assert "3 people in the roster" in str(found[0]["message"])  # 2 students and a teacher
    assert "nobody can log in with Clever yet" in str(found[1]["message"])


def test_seats_exceeded_and_people_matched_by_email_are_counted() -> None:
    rows = [student(n) for n in range(1, 4)]
    rows += [student(n, student_clever_id="") for n in range(4, 1_004)]
    r = roster(rows)
    result = diff(r, Current(), Policy(licenses={"rocketlit": LicenseRow(1_000, False)}))
    found = {w["code"]: w for w in readiness.warnings(READY, r, result)}
    assert found["SEATS_EXCEEDED"]["message"] == (
        "1,003 students need RocketLit seats but the district has 1,000 (3 over)."
    )
    assert found["MATCHED_BY_EMAIL"]["count"] == 1_000
    assert str(found["MATCHED_BY_EMAIL"]["message"]).startswith("1,000 people will be matched by email")


def test_a_person_keeping_a_clever_id_bound_at_login_is_not_matched_by_email() -> None:
    r = roster([student(1, student_clever_id="")])
    assert diff(r, stored(r), POLICY).email_only == 1
    current = stored(r)
    current.people = [
        p._replace(clever_id="c" * 24, clever_id_source="login") if p.role == "student" else p
        for p in current.people
    ]
    assert diff(r, current, POLICY).email_only == 0


def test_a_windows_1252_file_lists_the_names_it_changes_with_their_line() -> None:
    before = roster([row(student_first_name="Nguyễn"), student(2, student_first_name="José")])
    # the same roster saved as Windows-1252: "ễ" cannot be written and became "?"; "é" survives
    after = roster([row(student_first_name="Nguy?n"), student(2, student_first_name="José")], "cp1252")
    assert after.encoding == "windows-1252"
    found = readiness.warnings(READY, after, diff(after, stored(before), POLICY))
    (warning,) = found
    assert warning["code"] == "NOT_UTF8"
    assert "changes 1 first or last names" in str(warning["message"])
    assert "Nguy" not in str(warning["message"]) + str(warning["hint"])  # names only in `rows`
    assert warning["rows"] == [{"line": 2, "field": "first_name", "old": "Nguyễn", "new": "Nguy?n"}]


def test_a_first_windows_1252_file_lists_its_accented_names_to_check() -> None:
    r = roster([row(student_first_name="José"), student(2, student_last_name="Peña")], "cp1252")
    (warning,) = readiness.warnings(READY, r, diff(r, Current(), POLICY))
    assert warning["code"] == "NOT_UTF8"
    assert warning["rows"] == [
        {"line": 2, "field": "first_name", "old": None, "new": "José"},
        {"line": 3, "field": "last_name", "old": None, "new": "Peña"},
    ]


def test_the_district_state_is_read_from_licenses_and_the_clever_link(roster_engine: sa.Engine) -> None:
    with session_scope(roster_engine) as session:
        session.add(District(id="d1", name="D1"))
        session.add(District(id="d2", name="D2", clever_district_id="5327a245c76e6d0f01000001"))
        session.flush()
        session.add(License(district_id="d2", product="rocketlit", seats=10))
        session.add(License(district_id="d2", product="innerorbit", seats=0))
    with roster_engine.connect() as conn:
        assert readiness.load(conn, "d1") == DistrictState((), False)
        assert readiness.load(conn, "d2") == DistrictState(("rocketlit",), True)


def test_a_person_with_the_districts_own_id_is_not_matched_by_email() -> None:
    """A Clever login finds them by that id (sis_id) before any email."""
    header = [*HEADER, "student_sis_id"]
    rows = [student(1, student_clever_id="", student_sis_id="S-1"), student(2, student_clever_id="")]
    r = normalize(parse_bytes(csv_text(rows, header).encode()))
    assert not r.errors, r.errors.sorted()
    result = diff(r, Current(), POLICY)
    assert result.email_only == 1
    assert diff(r, stored(r), POLICY).email_only == 1


def test_without_a_diff_what_the_district_and_the_file_tell() -> None:
    """A file rejected before it was compared."""
    r = roster([row(student_first_name="José")], "cp1252")
    found = readiness.warnings(DistrictState((), False), r, None)
    assert codes(found) == ["NO_LICENSE", "NO_CLEVER_LINK", "NOT_UTF8"]
    assert found[2]["rows"] == [{"line": 2, "field": "first_name", "old": None, "new": "José"}]
