"""Under the `skip` row policy: what the skipped rows of a package name (importing/skip.py keeps those
schools, classes and people as stored). Each skipped error names a file and a line; the upload is
read again and the record on that line gives the ids it names, by the same line count the readers
use. Only a skipped import pays for this second read."""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import BinaryIO

from roster_api.importing import skip
from roster_api.importing.csv_format import Problem
from roster_api.importing.formats.clever import TEACHER_N
from roster_api.importing.formats.safezip import read_members
from roster_api.importing.formats.table import Report, Spec, Table, canonical, read_table
from roster_api.importing.normalize import SIS_KEY_PREFIX, STUDENT, TEACHER

BOTH = (TEACHER, STUDENT)
CLASS_FILES = ("classes.csv", "sections.csv")  # where a class's own row is

# per file: the columns that name a school, a class, and a person of some roles (BOTH: a OneRoster
# user, whose role comes from users.csv or roles.csv: an enrollment's `role` cell may be the very
# error, a teacher enrolled as a student)
Roles = tuple[str, ...]
_NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[str, Roles], ...]]] = {
    # OneRoster
    "orgs.csv": (("sourcedId",), (), ()),
    "classes.csv": (("schoolSourcedId",), ("sourcedId",), ()),
    "users.csv": ((), (), (("sourcedId", BOTH),)),
    "roles.csv": ((), (), (("userSourcedId", BOTH),)),
    "enrollments.csv": (
        ("schoolSourcedId", "School_id"),
        ("classSourcedId", "Section_id"),
        (("userSourcedId", BOTH), ("Student_id", (STUDENT,))),
    ),
    # Clever (its enrollments.csv is above: the two formats' columns do not overlap)
    "schools.csv": (("School_id",), (), ()),
    "students.csv": (("School_id",), (), (("Student_id", (STUDENT,)),)),
    "teachers.csv": (("School_id",), (), (("Teacher_id", (TEACHER,)),)),
    "sections.csv": (("School_id",), ("Section_id",), (("Teacher_id", (TEACHER,)),)),
}


def mentioned(source: BinaryIO, problems: Iterable[Problem]) -> skip.Mentioned:
    """What the rows at the problems' (file, line) name, in the stored upload `source` (a zip)."""
    source.seek(0)
    files = read_members(source).files
    lines: dict[str, set[int]] = {}
    for problem in problems:
        if problem.line is not None:
            lines.setdefault((problem.file or "").lower(), set()).add(problem.line)
    csvs = [name for name in files if name.lower().endswith(".csv")]
    if len(csvs) == 1 and set(lines) == {""}:  # a zipped v1 file: its problems name no file
        return skip.mentioned(io.BytesIO(files[csvs[0]]), lines[""])
    out = skip.Mentioned()
    for name, data in files.items():
        wanted = lines.get(name.lower())
        if wanted and name.lower() in _NAMES:
            _collect(name.lower(), data, wanted, out)
    for ids in (out.schools, out.classes, out.whole_classes):
        ids.discard("")
    return out


def _collect(file: str, data: bytes, wanted: set[int], out: skip.Mentioned) -> None:
    table = read_table(file, data, Spec(file, (), ()), Report())
    if table is None:
        return
    schools, classes, people = _NAMES[file]
    people = (*people, *_numbered_teachers(table, file))
    get_school = table.getter(*schools) if schools else None
    get_class = table.getter(*classes) if classes else None
    get_person = table.getter(*(column for column, _ in people)) if people else None
    for line, fields in table.rows():
        if line not in wanted:
            continue
        if get_school is not None:
            out.schools.update(v.strip() for v in get_school(fields))
        if get_class is not None:
            class_ids = {v.strip() for v in get_class(fields)}
            out.classes |= class_ids
            if file in CLASS_FILES:
                out.whole_classes |= class_ids
        if get_person is None:
            continue
        for (_, roles), value in zip(people, get_person(fields), strict=True):
            if value.strip():
                for role in roles:
                    out.people[role].add(SIS_KEY_PREFIX + value.strip())


def _numbered_teachers(table: Table, file: str) -> list[tuple[str, Roles]]:
    """A Clever section's Teacher_<n>_id columns."""
    if file != "sections.csv":
        return []
    teachers: Roles = (TEACHER,)
    return [(name, teachers) for key, name in table.names.items() if TEACHER_N.match(canonical(key))]
