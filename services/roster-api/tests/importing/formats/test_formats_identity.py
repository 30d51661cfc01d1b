"""People keep the district's own id (person.sis_id), and an import matches them by Clever ID, else
by sis_id (within the role), else by email: the same district sent as OneRoster, then as Clever's
files, then as a v1 CSV changes nothing; a delta patches the stored roster. SQLite and PostgreSQL."""

from __future__ import annotations

import io

import pytest
import sqlalchemy as sa

from roster_api.db import session_scope
from roster_api.importing import apply as apply_mod
from roster_api.importing.diff import Current, Diff, PersonRow, Policy, diff
from roster_api.importing.formats import read_files, read_upload
from roster_api.importing.formats.current import loader
from roster_api.importing.normalize import PersonIn, Roster, normalize
from roster_api.importing.parse import parse_bytes
from roster_api.models import District, License, utcnow

from .helpers import DATA, files_of, problems, zip_bytes


@pytest.fixture
def engine(roster_engine: sa.Engine) -> sa.Engine:
    with session_scope(roster_engine) as session:
        session.add(District(id="d1", name="D1"))
        session.flush()
        session.add(License(district_id="d1", product="rocketlit", seats=1000))
    return roster_engine


def _import(engine: sa.Engine, read: object) -> Diff:
    """Reads (with the district's roster at hand for a delta), diffs and writes, like an import."""
    with engine.connect() as conn:
        apply_mod.begin(conn)
        apply_mod.lock_district(conn, "d1")
        roster = read(conn) if callable(read) else read
        assert isinstance(roster, Roster)
        assert not roster.errors, problems(roster)
        result = diff(roster, apply_mod.load_current(conn, "d1"), apply_mod.load_policy(conn, "d1"))
        assert not result.errors, [p.as_dict() for p in result.errors.sorted()]
        apply_mod.write_plan(conn, "d1", result.plan, utcnow())
        conn.commit()
    return result


def _counts(result: Diff, entity: str) -> tuple[int, int, int, int]:
    ch = result.changes[entity]
    return ch.created, ch.updated, ch.deactivated, ch.unchanged


def _people(engine: sa.Engine) -> dict[str, tuple[object, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT sis_id, id, first_name, email, active FROM person ORDER BY sis_id")
        )
        return {row[0]: tuple(row[1:]) for row in rows}


def _zip(package: str) -> Roster:
    roster = read_upload(io.BytesIO(zip_bytes(files_of(package))))
    assert roster is not None
    return roster


def test_the_same_district_in_three_formats_changes_nothing(engine: sa.Engine) -> None:
    first = _import(engine, _zip("oneroster11"))
    assert _counts(first, "students") == (5, 0, 0, 0)
    stored = _people(engine)
    assert set(stored) == {"S1", "S2", "S3", "S4", "S5", "T1", "T2", "T3"}
    for again in (
        _zip("clever2"),
        normalize(parse_bytes((DATA / "v1.csv").read_bytes())),
        _zip("oneroster12"),
    ):
        result = _import(engine, again)
        for entity in ("schools", "classes", "teachers", "students", "class_teachers", "enrollments"):
            assert _counts(result, entity)[:3] == (0, 0, 0), entity
    assert _people(engine) == stored


def test_a_person_is_matched_by_sis_id_when_name_and_email_change(engine: sa.Engine) -> None:
    _import(engine, _zip("clever2"))
    before = _people(engine)
    students = (DATA / "clever2" / "students.csv").read_bytes()
    students = students.replace(b"Jane,10", b"Janet,10").replace(b"jane.doe@", b"janet.doe@")
    files = files_of("clever2") | {"students.csv": students}
    result = _import(engine, read_files(files))
    assert _counts(result, "students")[:3] == (0, 1, 0)
    after = _people(engine)
    assert after["S3"] == (before["S3"][0], "Janet", "janet.doe@springfield.example.org", True)


def test_a_delta_deactivates_what_it_deletes_and_leaves_the_rest(engine: sa.Engine) -> None:
    _import(engine, _zip("oneroster11"))
    manifest = b"propertyName,value\nmanifest.version,1.0\noneroster.version,1.1\nfile.users,delta\n"
    users = (DATA / "oneroster11" / "users.csv").read_bytes().splitlines()[0] + b"\n"
    users += b"S5,tobedeleted,2026-12-01T00:00:00Z,true,sch-2,student,bpoe,,Bob,Poe,,,,,,,12,\n"
    delta = zip_bytes({"manifest.csv": manifest, "users.csv": users})

    def read(conn: sa.Connection) -> Roster | None:
        return read_upload(io.BytesIO(delta), current=loader(conn, "d1"))

    result = _import(engine, read)
    assert _counts(result, "students")[:3] == (0, 0, 1)
    assert _counts(result, "enrollments")[:3] == (0, 0, 1)
    assert _counts(result, "teachers")[:3] == (0, 0, 0)
    assert _people(engine)["S5"][-1] in (False, 0)


# --- the diff's identity rule, without a database -------------------------------------------------


def _roster(*people: PersonIn) -> Roster:
    roster = Roster()
    roster.schools = {}
    for person in people:
        roster.students[person.key] = person
    return roster


def _row(pid: str, *, sis_id: str | None, email: str | None, clever_id: str | None = None) -> PersonRow:
    return PersonRow(
        pid, "student", clever_id, "roster" if clever_id else None, email, "A", "B", "3", True, sis_id
    )


def _policy() -> Policy:
    return Policy(licenses={})


def test_sis_id_comes_before_email_and_is_within_the_role() -> None:
    person = PersonIn("student", None, "shared@x.org", "A", "B", "3", 2, "S1")
    current = Current(
        people=[
            _row("p_email", sis_id=None, email="shared@x.org"),
            _row("p_sis", sis_id="S1", email="old@x.org"),
            PersonRow("p_teacher", "teacher", None, None, None, "A", "B", None, True, "S1"),
        ]
    )
    result = diff(_roster(person), current, _policy())
    assert [values[0] for values in result.plan.people_set] == ["p_sis"]
    assert result.plan.people_new == []
    assert sorted(result.plan.people_off) == ["p_email", "p_teacher"]


def test_email_adoption_never_takes_a_person_with_another_sis_id() -> None:
    person = PersonIn("student", None, "a@x.org", "A", "B", "3", 2, "S2")
    current = Current(people=[_row("p_1", sis_id="S1", email="a@x.org")])
    result = diff(_roster(person), current, _policy())
    assert result.plan.people_off == ["p_1"]
    assert len(result.plan.people_new) == 1
    assert result.plan.people_new[0][-1] == "S2"


def test_a_v1_person_needs_a_clever_id_a_sis_id_or_an_email() -> None:
    header = b"school_id,school_name,class_id,class_name,teacher_first_name,teacher_last_name,teacher_sis_id,"
    header += b"student_first_name,student_last_name,student_sis_id,student_email\n"
    ok = normalize(parse_bytes(header + b"s1,S,c1,C,T,T,T1,A,B,S1,\n"))
    assert not ok.errors
    assert ok.students["sis:S1"].sis_id == "S1"
    bad = normalize(parse_bytes(header + b"s1,S,c1,C,T,T,T1,A,B,,\n"))
    assert [(p.line, p.column, p.code.value) for p in bad.errors.sorted()] == [
        (2, "student_clever_id", "MISSING_PERSON_ID")
    ]
