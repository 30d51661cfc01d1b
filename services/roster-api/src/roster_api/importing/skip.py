"""The row policy of a district (`sync.on_row_errors`): `reject` (the default) rejects a file with any
error; `skip` leaves out the rows with errors and keeps what they mention as stored.

Under `skip`, a file whose errors are all on rows (each has a line) is imported without them: the
rows with errors are listed in the report (`skipped_rows`), and the schools, classes and people those
rows mention are put back into the parsed roster with their stored state and class links before the
diff, so the import neither updates nor deactivates them (a person such a row names who is not
stored, or stored inactive, is left out: neither created nor reactivated with part of their classes).
A file-level error (no line: a missing column, an unreadable file) always rejects. The row errors that
can be skipped are the checks of one row's values (ROW_CODES; in a OneRoster or Clever package, also
PACKAGE_ROW_CODES: a record's references, duplicate ids, roles and statuses). What a v1 file's rows
name is read here (`mentioned`); a package's, by `formats.mentions`."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import BinaryIO

import sqlalchemy as sa

from roster_api.importing import csv_format as f
from roster_api.importing.csv_format import Code, Problem, Problems
from roster_api.importing.diff import Current, PersonRow
from roster_api.importing.links import Links, LinkStore
from roster_api.importing.normalize import (
    SIS_KEY_PREFIX,
    STUDENT,
    TEACHER,
    ClassIn,
    PersonIn,
    Roster,
    SchoolIn,
)
from roster_api.importing.parse import parse
from roster_api.models import District

REJECT = "reject"
SKIP = "skip"


@dataclass
class Mentioned:
    """What the skipped rows name: school ids, class ids and person keys by role."""

    schools: set[str] = field(default_factory=set)
    classes: set[str] = field(default_factory=set)
    people: dict[str, set[str]] = field(default_factory=lambda: {TEACHER: set(), STUDENT: set()})
    # classes whose own row was skipped (a package's classes.csv or sections.csv): the reader left
    # out their links too, so their stored members are kept, even one with no other class here
    whole_classes: set[str] = field(default_factory=set)


def policy(conn: sa.Connection, district_id: str) -> str:
    value = conn.execute(
        sa.select(District.on_row_errors).where(District.id == district_id)  # type: ignore[call-overload]
    ).scalar_one()
    return str(value)


# the errors of one row's values, which the row's own cells name (everything else rejects the file:
# the header, a record that cannot be read, an empty file, a person who is both student and teacher)
ROW_CODES = frozenset(
    {
        Code.MISSING_VALUE,
        Code.VALUE_TOO_LONG,
        Code.SCHOOL_NAME_CONFLICT,
        Code.CLASS_NAME_CONFLICT,
        Code.CLASS_SCHOOL_CONFLICT,
        Code.INVALID_CLEVER_ID,
        Code.INVALID_EMAIL,
        Code.MISSING_PERSON_ID,
        Code.INVALID_GRADE,
        Code.PERSON_CONFLICT,
        Code.EMAIL_CLEVER_ID_CONFLICT,
        Code.DUPLICATE_ENROLLMENT,
    }
)


# in a package (whose records are one row each), also the errors of a record's references, id, role
# or status: the record is left out, and what it names is kept as stored
PACKAGE_ROW_CODES = ROW_CODES | {
    Code.UNKNOWN_REFERENCE,
    Code.DUPLICATE_ID,
    Code.ROLE_CONFLICT,
    Code.INVALID_VALUE,
}
PACKAGE_FORMATS = frozenset({"oneroster", "clever"})
MANIFEST = "manifest.csv"  # a OneRoster package's manifest: its lines are the package's settings


def is_package(roster: Roster) -> bool:
    """A OneRoster or Clever package (its problems name a file), not a v1 file (zipped or not)."""
    return roster.format_info is not None and roster.format_info.get("format") in PACKAGE_FORMATS


def skippable(roster: Roster) -> bool:
    """True when every error is a row error (of a v1 file, or of one of a package's files)."""
    if not roster.errors.total:
        return False
    listed = roster.errors.sorted()
    complete = roster.errors.total == len(listed)  # beyond the listed ones, the lines are unknown
    row_error = _package_row_error if is_package(roster) else _row_error
    return complete and all(row_error(p) for p in listed)


def _row_error(problem: Problem) -> bool:
    return (
        problem.code in ROW_CODES and problem.line is not None and problem.line > 1 and problem.file is None
    )


def _package_row_error(problem: Problem) -> bool:
    """A record's error in one of the package's files (not the manifest, not the current roster a
    delta is merged into: those have no rows of this upload)."""
    return (
        problem.code in PACKAGE_ROW_CODES
        and problem.line is not None
        and problem.line > 1
        and problem.file is not None
        and problem.file.lower().endswith(".csv")
        and problem.file.lower() != MANIFEST
    )


def take_errors(roster: Roster) -> Problems:
    """Moves the roster's errors out: they become the skipped rows, each also a warning (so the
    results file, the notices and the CLI list it)."""
    skipped = roster.errors
    roster.errors = Problems()
    for problem in skipped.sorted():
        roster.warnings.add(replace(problem, message=f"{problem.message} The row was skipped."))
    return skipped


def person_key(clever_id: str, email: str, sis_id: str) -> str:
    """The roster key a row's cells give a person (as normalize and the format readers key them)."""
    clever_id, email, sis_id = clever_id.strip().lower(), email.strip().lower(), sis_id.strip()
    return clever_id or (SIS_KEY_PREFIX + sis_id if sis_id else email)


def mentioned(source: BinaryIO, lines: set[int]) -> Mentioned:
    """Reads the v1 file again and collects the keys its rows at `lines` name."""
    source.seek(0)
    parsed = parse(source)
    cols = parsed.columns
    out = Mentioned()

    def cell(fields: list[str], name: str) -> str:
        index = cols.get(name)
        return fields[index] if index is not None and index < len(fields) else ""

    try:
        for line, fields in parsed.rows():
            if line not in lines:
                continue
            out.schools.add(cell(fields, f.SCHOOL_ID).strip())
            out.classes.add(cell(fields, f.CLASS_ID).strip())
            for role, cid, email, sis in (
                (TEACHER, f.TEACHER_CLEVER_ID, f.TEACHER_EMAIL, f.TEACHER_SIS_ID),
                (STUDENT, f.STUDENT_CLEVER_ID, f.STUDENT_EMAIL, f.STUDENT_SIS_ID),
            ):
                key = person_key(cell(fields, cid), cell(fields, email), cell(fields, sis))
                if key:
                    out.people[role].add(key)
    finally:
        parsed.close()
    out.schools.discard("")
    out.classes.discard("")
    return out


def _roster_clever_id(person: PersonRow) -> str | None:
    """The Clever ID a file gave the person; one bound at login is not the roster's (a file without
    Clever IDs keys the person by sis_id or email, and the diff keeps the login's binding)."""
    return person.clever_id if person.clever_id_source != "login" else None


def _stored_key(person: PersonRow) -> str:
    return person_key(_roster_clever_id(person) or "", person.email or "", person.sis_id or "")


def keep_stored(roster: Roster, current: Current, named: Mentioned) -> None:
    """Puts the stored state of what the skipped rows name back into `roster` (in place): the
    schools, classes and people as they are stored, and their stored class links; a named person
    with no active stored row is left out."""
    for school_id in named.schools:
        if (school := current.schools.get(school_id)) is not None and school[1]:
            roster.schools[school_id] = SchoolIn(school[0], 0)
    for class_id in named.classes:
        if (klass := current.classes.get(class_id)) is not None and klass[2]:
            roster.classes[class_id] = ClassIn(klass[1], klass[0], 0)
            roster.schools.setdefault(klass[0], SchoolIn(current.schools[klass[0]][0], 0))
    key_of: dict[str, str] = {}  # stored person id -> roster key (active people only)
    known: dict[str, set[str]] = {TEACHER: set(), STUDENT: set()}  # every key an active person has
    for person in current.people:
        if not person.active:
            continue
        key = _stored_key(person)
        key_of[person.id] = key
        known[person.role].update(_keys(person))
        if key in named.people[person.role]:
            people = roster.students if person.role == STUDENT else roster.teachers
            people[key] = _stored_person(person)
    _keep_members(roster, current, named)
    _keep_links(roster, current, named, key_of)
    _leave_out_new(roster, named, known)


def _keep_members(roster: Roster, current: Current, named: Mentioned) -> None:
    """The stored active members of a whole named class that the roster lacks (the class was their
    only one in this file) are put back as stored; `_keep_links` then gives them that class."""
    if not named.whole_classes:
        return
    rows = {person.id: person for person in current.people if person.active}
    for links, people in (
        (_loaded(current.class_teachers).active, roster.teachers),
        (_loaded(current.enrollments).active, roster.students),
    ):
        for person_id, class_ids in links.items():
            person = rows.get(person_id)
            if person is None or named.whole_classes.isdisjoint(class_ids):
                continue
            key = _stored_key(person)
            if key and key not in people:
                people[key] = _stored_person(person)


def _loaded(links: LinkStore) -> Links:
    """The stored links of a `skip` import are loaded (apply.load_current with links_in_memory)."""
    if not isinstance(links, Links):
        raise TypeError("the skip row policy needs the stored links in memory")
    return links


def _stored_person(person: PersonRow) -> PersonIn:
    return PersonIn(
        person.role,
        _roster_clever_id(person),
        person.email,
        person.first_name,
        person.last_name,
        person.grade,
        0,
        person.sis_id,
    )


def _keys(person: PersonRow) -> set[str]:
    """Every roster key the stored person answers to (Clever ID, sis_id, email)."""
    clever_id, email = (person.clever_id or "").strip().lower(), (person.email or "").strip().lower()
    keys = {clever_id, email, SIS_KEY_PREFIX + person.sis_id.strip() if person.sis_id else ""}
    keys.discard("")
    return keys


def _leave_out_new(roster: Roster, named: Mentioned, known: dict[str, set[str]]) -> None:
    """A named person no active stored person answers to is left out of this import (not created, not
    reactivated): their links are not this file's to give (`_keep_links` took what good rows gave
    them), so adding them would apply part of what the skipped rows are about."""
    for role, people in ((TEACHER, roster.teachers), (STUDENT, roster.students)):
        for key in named.people[role] - known[role]:
            if people.pop(key, None) is not None and role == STUDENT:
                roster.classes_of.pop(key, None)


def _keep_links(roster: Roster, current: Current, named: Mentioned, key_of: dict[str, str]) -> None:
    """The named people's links become the stored ones (what good rows gave them goes); a named
    class keeps its stored links (good rows may add to it)."""
    teachers, students = named.people[TEACHER], named.people[STUDENT]
    roster.class_teachers = {(c, t) for c, t in roster.class_teachers if t not in teachers}
    for student in students:
        if student in roster.classes_of:
            roster.classes_of[student] = []
    for person_id, class_ids in _loaded(current.class_teachers).active.items():
        key = key_of.get(person_id)
        if key is None or key not in roster.teachers:
            continue
        for class_id in class_ids:
            if class_id in roster.classes and (key in named.people[TEACHER] or class_id in named.classes):
                roster.class_teachers.add((class_id, key))
    for person_id, class_ids in _loaded(current.enrollments).active.items():
        key = key_of.get(person_id)
        if key is None or key not in roster.students:
            continue
        for class_id in class_ids:
            named_pair = key in named.people[STUDENT] or class_id in named.classes
            if named_pair and class_id in roster.classes and (class_id, key) not in roster.enrollments:
                roster.classes_of.setdefault(key, []).append(class_id)
