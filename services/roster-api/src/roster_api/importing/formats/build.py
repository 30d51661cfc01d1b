"""What every format's reader fills: schools, classes, people keyed by the district's own ids, class
teachers and enrollments -> the same `Roster` the v1 CSV gives, so the diff, holds, seats and apply
never know which format a district sent."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from roster_api.importing import csv_format as f
from roster_api.importing.csv_format import Code
from roster_api.importing.formats.table import Report
from roster_api.importing.normalize import (
    SIS_KEY_PREFIX,
    STUDENT,
    TEACHER,
    ClassIn,
    PersonIn,
    Roster,
    SchoolIn,
)

# OneRoster's CEDS entry grade codes, where they differ from the v1 spellings (PS is PostGraduate here)
CEDS_GRADES = {
    "IT": "InfantToddler",
    "PR": "Preschool",
    "PK": "PreKindergarten",
    "TK": "TransitionalKindergarten",
    "KG": "Kindergarten",
    "PS": "PostGraduate",
    "UG": "Ungraded",
    "OTHER": "Other",
}


def grade_of(raw: str, *, ceds: bool) -> str | None:
    value = raw.strip()
    if not value:
        return None
    if ceds:
        found = CEDS_GRADES.get(value.upper())
        if found:
            return found
    return f.normalize_grade(value)


class Where(NamedTuple):
    """The file and line a record came from (a tuple: one per record of a package, and a frozen
    dataclass's __init__ is several times slower to make)."""

    file: str
    line: int


@dataclass
class Builder:
    report: Report
    format_info: dict[str, object]
    schools: dict[str, SchoolIn] = field(default_factory=dict)
    classes: dict[str, ClassIn] = field(default_factory=dict)
    people: dict[str, dict[str, PersonIn]] = field(default_factory=lambda: {TEACHER: {}, STUDENT: {}})
    class_teachers: dict[tuple[str, str], None] = field(default_factory=dict)  # (class, key), ordered
    enrollments: dict[tuple[str, str], None] = field(default_factory=dict)
    rows: int = 0
    emails: dict[tuple[str, str], str] = field(default_factory=dict)  # (role, email) -> sis id
    files: dict[str, str] = field(default_factory=dict)  # role -> the file its people come from
    failed: set[str] = field(default_factory=set)  # keys of people with errors (not reported again)

    def person(
        self,
        where: Where,
        role: str,
        sis_id: str,
        first: str,
        last: str,
        email: str,
        grade: str | None,
        columns: tuple[str, str, str],  # the file's first name, last name and email columns
    ) -> PersonIn | None:
        """A validated person (not yet added), or None with the errors reported."""
        first, last, email = first.strip(), last.strip(), email.strip().lower()
        ok = True
        for value, column, what in ((first, columns[0], "first name"), (last, columns[1], "last name")):
            if not value:
                ok = False
                self.report.error(
                    where.file, where.line, column, Code.MISSING_VALUE, f"The {role}'s {what} is empty."
                )
            elif len(value) > f.MAX_NAME_LENGTH:
                ok = False
                self.report.error(
                    where.file,
                    where.line,
                    column,
                    Code.VALUE_TOO_LONG,
                    f"The {role}'s {what} has {len(value)} characters; at most {f.MAX_NAME_LENGTH}.",
                )
        if len(sis_id) > f.MAX_ID_LENGTH:
            ok = False
            self.report.error(
                where.file,
                where.line,
                None,
                Code.VALUE_TOO_LONG,
                f"The {role}'s id is longer than {f.MAX_ID_LENGTH}.",
            )
        if email and (len(email) > f.MAX_EMAIL_LENGTH or not f.EMAIL_RE.match(email)):
            self.report.warn(
                where.file,
                where.line,
                columns[2],
                Code.INVALID_EMAIL,
                "The value is not an email address; ignored.",
            )
            email = ""
        if email:
            owner = self.emails.setdefault((role, email), sis_id)
            if owner != sis_id:
                self.report.warn(
                    where.file,
                    where.line,
                    columns[2],
                    Code.EMAIL_CLEVER_ID_CONFLICT,
                    f"Another {role} (id {owner}) has the same email; it is kept for that one only.",
                    "One email is one person.",
                )
                email = ""
        if not ok:
            self.failed.add(SIS_KEY_PREFIX + sis_id)
            return None
        return PersonIn(role, None, email or None, first, last, grade, where.line, sis_id)

    def add_person(self, person: PersonIn) -> None:
        self.people[person.role][person.key] = person

    def finish(self) -> Roster:
        """The roster; people in no class are left out (as in a v1 file, where a person is a row)."""
        roster = Roster(
            errors=self.report.errors, warnings=self.report.warnings, format_info=self.format_info
        )
        roster.rows = self.rows
        classes_of = roster.classes_of
        owner: str | None = None
        own: list[str] = []
        for class_id, key in self.enrollments:  # each pair once
            if key is not owner:  # a student's enrollments are usually together
                owner = key
                own = classes_of.setdefault(key, [])
            own.append(class_id)
        # as in a v1 file, where each row is an enrollment: a class exists through its students, a
        # school through its classes, a person through a class
        taught = {class_id for class_id, _ in self.enrollments}
        empty = [class_id for class_id in self.classes if class_id not in taught]
        if empty:
            self.report.warn(
                None,
                None,
                None,
                Code.NOT_ENROLLED,
                f"{len(empty)} classes have no students and are left out (first: {empty[0]}).",
            )
        roster.classes = {k: v for k, v in self.classes.items() if k in taught}
        used = {c.school_id for c in roster.classes.values()}
        roster.schools = {k: v for k, v in self.schools.items() if k in used}
        roster.class_teachers = {pair for pair in self.class_teachers if pair[0] in taught}
        linked = {TEACHER: {key for _, key in roster.class_teachers}, STUDENT: classes_of.keys()}
        for role, target in ((TEACHER, roster.teachers), (STUDENT, roster.students)):
            for key, person in self.people[role].items():
                if key in linked[role]:
                    target[key] = person
                else:
                    self.report.warn(
                        self.files.get(role),
                        person.line,
                        None,
                        Code.NOT_ENROLLED,
                        f"The {role} {person.sis_id} is in no class; not imported.",
                        "Only people with a class get an account.",
                    )
        return roster
