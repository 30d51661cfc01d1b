"""Rows -> a validated roster: schools, classes, teachers, students, class teachers and enrollments, each
once, with every problem as a value (line and column). Pure: no database, no file system.

Most values repeat (a student is on ~6 rows, a class on ~25), so each distinct combination of raw values
is checked once and remembered; that is what keeps a million rows in seconds."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter

from roster_api.importing import csv_format as f
from roster_api.importing.csv_format import Code, Problem, Problems
from roster_api.importing.parse import DELIMITER_NAMES, ParsedFile

STUDENT = "student"
TEACHER = "teacher"
SIS_KEY_PREFIX = "sis:"


@dataclass(slots=True)
class SchoolIn:
    name: str
    line: int


@dataclass(slots=True)
class ClassIn:
    name: str
    school_id: str
    line: int


@dataclass(slots=True)
class PersonIn:
    role: str
    clever_id: str | None
    email: str | None
    first_name: str
    last_name: str
    grade: str | None
    line: int
    # the district's own id (OneRoster sourcedId, Clever's Student_id/Teacher_id, v1's *_sis_id)
    sis_id: str | None = None

    @property
    def key(self) -> str:
        # The roster key: the Clever ID when the row has one, else the district's own id, else the
        # lower-cased email. A district id is prefixed so that it never equals a Clever ID or an email.
        return self.clever_id or (SIS_KEY_PREFIX + self.sis_id if self.sis_id else self.email or "")


class Enrollments:
    """(class id, student key) pairs, read from a roster's classes by student: its length, its pairs
    (student by student, in the order students were first seen) and whether it holds a pair."""

    __slots__ = ("_of",)

    def __init__(self, classes_of: dict[str, list[str]]) -> None:
        self._of = classes_of

    def __len__(self) -> int:
        return sum(map(len, self._of.values()))

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for key, classes in self._of.items():
            for class_id in classes:
                yield class_id, key

    def __contains__(self, pair: object) -> bool:
        if not isinstance(pair, tuple) or len(pair) != 2:
            return False
        found = self._of.get(pair[1])
        return found is not None and pair[0] in found


@dataclass
class Roster:
    schools: dict[str, SchoolIn] = field(default_factory=dict)
    classes: dict[str, ClassIn] = field(default_factory=dict)
    teachers: dict[str, PersonIn] = field(default_factory=dict)
    students: dict[str, PersonIn] = field(default_factory=dict)
    class_teachers: set[tuple[str, str]] = field(default_factory=set)
    # the enrollments, by student: key -> class ids, each once (what the diff compares); `enrollments`
    # shows them as (class id, student key) pairs
    classes_of: dict[str, list[str]] = field(default_factory=dict)
    rows: int = 0
    encoding: str = "utf-8"
    bom: bool = False
    delimiter: str = ","
    errors: Problems = field(default_factory=Problems)
    warnings: Problems = field(default_factory=Problems)
    # set by a standard format's reader (importing.formats): what it was, e.g. {"format": "oneroster"}
    format_info: dict[str, object] | None = None

    @property
    def enrollments(self) -> Enrollments:
        """The (class id, student key) pairs, each once: a view of `classes_of`, so that a district's
        million enrollments are not held a second time as pairs."""
        return Enrollments(self.classes_of)

    def summary(self) -> dict[str, int]:
        return {
            "rows": self.rows,
            "schools": len(self.schools),
            "teachers": len(self.teachers),
            "classes": len(self.classes),
            "students": len(self.students),
            "enrollments": len(self.enrollments),
        }

    def file_info(self) -> dict[str, object]:
        if self.format_info is not None:
            return dict(self.format_info)
        return {
            "format": f.FORMAT_VERSION,
            "encoding": self.encoding,
            "bom": self.bom,
            "delimiter": DELIMITER_NAMES.get(self.delimiter, self.delimiter),
        }


_ROLE_COLUMNS = {
    TEACHER: (
        f.TEACHER_CLEVER_ID,
        f.TEACHER_EMAIL,
        f.TEACHER_FIRST_NAME,
        f.TEACHER_LAST_NAME,
        f.TEACHER_SIS_ID,
        None,
    ),
    STUDENT: (
        f.STUDENT_CLEVER_ID,
        f.STUDENT_EMAIL,
        f.STUDENT_FIRST_NAME,
        f.STUDENT_LAST_NAME,
        f.STUDENT_SIS_ID,
        f.STUDENT_GRADE_LEVEL,
    ),
}
# what a district's own student or staff number usually looks like (short, has digits)
_LOCAL_NUMBER_RE = re.compile(r"^(?=.*[0-9])[A-Za-z0-9_.-]{1,20}$")
_NUMBER_NAMES = {STUDENT: "a Student Number", TEACHER: "a Teacher or Staff Number"}
_FIELD_LABELS = {
    "first_name": "first name",
    "last_name": "last name",
    "email": "email",
    "grade": "grade",
    "sis_id": "sis_id",
}


def _clip(value: str, size: int = 40) -> str:
    return value if len(value) <= size else value[: size - 1] + "…"


# receives each (class_id, student key) pair once, in batches, as the rows are read
PairSink = Callable[[list[tuple[str, str]]], None]
SINK_BATCH = 20_000


class _Normalizer:
    def __init__(self, parsed: ParsedFile, on_enrollments: PairSink | None = None) -> None:
        self.parsed = parsed
        self.on_enrollments = on_enrollments
        self.out = Roster(
            encoding=parsed.encoding, bom=parsed.bom, delimiter=parsed.delimiter, warnings=parsed.warnings
        )
        self.errors = self.out.errors
        self.school_seen: dict[tuple[str, ...], str] = {}
        self.class_seen: dict[tuple[str, ...], str] = {}
        self.person_seen: dict[str, dict[tuple[str, ...], str]] = {TEACHER: {}, STUDENT: {}}
        # email -> (Clever ID, line, person key) of its first row
        self.email_ids: dict[str, dict[str, tuple[str | None, int, str]]] = {TEACHER: {}, STUDENT: {}}

    def error(self, line: int, column: str | None, code: Code, message: str, hint: str | None = None) -> None:
        self.errors.add(Problem(line, column, code, message, hint))

    def required(self, line: int, column: str, value: str, what: str) -> bool:
        if not value:
            self.error(line, column, Code.MISSING_VALUE, f"The {what} is empty; it is required.")
            return False
        limit = f.MAX_NAME_LENGTH if column.endswith("name") else f.MAX_ID_LENGTH
        if len(value) > limit:
            self.error(
                line, column, Code.VALUE_TOO_LONG, f"The {what} has {len(value)} characters; at most {limit}."
            )
            return False
        return True

    def school(self, line: int, raw_id: str, raw_name: str) -> str | None:
        school_id, name = raw_id.strip(), raw_name.strip()
        ok = self.required(line, f.SCHOOL_ID, school_id, "school ID")
        ok = self.required(line, f.SCHOOL_NAME, name, "school name") and ok
        if not ok:
            return None
        known = self.out.schools.get(school_id)
        if known is None:
            self.out.schools[school_id] = SchoolIn(name, line)
        elif known.name != name:
            self.error(
                line,
                f.SCHOOL_NAME,
                Code.SCHOOL_NAME_CONFLICT,
                f"School {_clip(school_id)!r} is named {_clip(name)!r} on line {line} but "
                f"{_clip(known.name)!r} on line {known.line}.",
                "A school ID must have the same name on every row.",
            )
            return None
        self.school_seen[(raw_id, raw_name)] = school_id
        return school_id

    def klass(self, line: int, class_id: str, name: str, school_id: str, raw: tuple[str, ...]) -> str | None:
        class_id, name = class_id.strip(), name.strip()
        ok = self.required(line, f.CLASS_ID, class_id, "class ID")
        ok = self.required(line, f.CLASS_NAME, name, "class name") and ok
        if not ok:
            return None
        known = self.out.classes.get(class_id)
        if known is None:
            self.out.classes[class_id] = ClassIn(name, school_id, line)
        elif known.name != name:
            self.error(
                line,
                f.CLASS_NAME,
                Code.CLASS_NAME_CONFLICT,
                f"Class {_clip(class_id)!r} is named {_clip(name)!r} on line {line} but "
                f"{_clip(known.name)!r} on line {known.line}.",
                "A class ID must have the same name on every row.",
            )
            return None
        elif known.school_id != school_id:
            self.error(
                line,
                f.SCHOOL_ID,
                Code.CLASS_SCHOOL_CONFLICT,
                f"Class {_clip(class_id)!r} is in school {_clip(school_id)!r} on line {line} but in "
                f"{_clip(known.school_id)!r} on line {known.line}.",
                "A class belongs to one school; give classes of different schools different IDs.",
            )
            return None
        self.class_seen[raw] = class_id
        return class_id

    def person(self, line: int, role: str, raw: tuple[str, ...]) -> str | None:
        cache = self.person_seen[role]
        cid_col, email_col, first_col, last_col, sis_col, grade_col = _ROLE_COLUMNS[role]
        clever_id, email, first, last, sis_id, grade_raw = map(str.strip, raw)
        if role == TEACHER and not (clever_id or email or first or last or sis_id):
            return None  # a row without a teacher
        # once per person (tens of thousands): the valid case is checked inline, `required` (which
        # formats its messages) only runs for a value that has a problem
        max_name = f.MAX_NAME_LENGTH
        ok = 0 < len(first) <= max_name or self.required(line, first_col, first, f"{role}'s first name")
        ok = (0 < len(last) <= max_name or self.required(line, last_col, last, f"{role}'s last name")) and ok
        if clever_id:
            lowered = clever_id.lower()
            if f.CLEVER_ID_RE.match(lowered):
                clever_id = lowered
            else:
                ok = False
                hint = None
                if _LOCAL_NUMBER_RE.match(clever_id):
                    hint = (
                        f"This looks like {_NUMBER_NAMES[role]}, not the Clever ID. Export the Clever ID "
                        f"from Clever, or leave {cid_col} empty and give the {role}'s email."
                    )
                self.error(
                    line,
                    cid_col,
                    Code.INVALID_CLEVER_ID,
                    f"{_clip(clever_id)!r} is not a Clever ID (24 hexadecimal characters, e.g. "
                    "5787451bd72145af0700228b).",
                    hint,
                )
        if email:
            email = email.lower()
            if len(email) > f.MAX_EMAIL_LENGTH or not f.EMAIL_RE.match(email):
                ok = False
                self.error(line, email_col, Code.INVALID_EMAIL, f"{_clip(email)!r} is not an email address.")
        if sis_id and len(sis_id) > f.MAX_ID_LENGTH:
            ok = False
            self.error(
                line, sis_col, Code.VALUE_TOO_LONG, f"The {role}'s sis_id is longer than {f.MAX_ID_LENGTH}."
            )
        if not clever_id and not email and not sis_id:
            ok = False
            self.error(
                line,
                cid_col,
                Code.MISSING_PERSON_ID,
                f"The {role} has neither a Clever ID, a sis_id nor an email; one of them is required.",
            )
        grade: str | None = None
        if grade_col is not None and grade_raw:
            # the usual spellings ("9", "k") are keys as they are; the rest go through the full rules
            grade = f.GRADE_ALIASES.get(grade_raw) or f.normalize_grade(grade_raw)
            if grade is None:
                ok = False
                self.error(
                    line,
                    grade_col,
                    Code.INVALID_GRADE,
                    f"{_clip(grade_raw)!r} is not a grade level.",
                    "Use K, PK, TK, 1-13 (or 01, 1st, Grade 1), PostGraduate, Ungraded or Other.",
                )
        if not ok:
            return None
        person = PersonIn(role, clever_id or None, email or None, first, last, grade, line, sis_id or None)
        key = person.key
        people = self.out.teachers if role == TEACHER else self.out.students
        known = people.get(key)
        if known is not None:
            for name in ("first_name", "last_name", "email", "grade", "sis_id"):
                mine, theirs = getattr(person, name), getattr(known, name)
                if mine != theirs:
                    column = {
                        "first_name": first_col,
                        "last_name": last_col,
                        "email": email_col,
                        "sis_id": sis_col,
                    }.get(name, grade_col)
                    self.error(
                        line,
                        column,
                        Code.PERSON_CONFLICT,
                        f"The {role} {_clip(key)} has {_FIELD_LABELS[name]} {_clip(mine or '')!r} on line "
                        f"{line} but {_clip(theirs or '')!r} on line {known.line}.",
                        f"One {role} must have the same name, email, grade and sis_id on every row.",
                    )
                    return None
        if email:
            emails = self.email_ids[role]
            other = emails.get(email)
            if other is None:
                emails[email] = (person.clever_id, line, key)
            elif other[2] != key:
                theirs_id = other[0] or "no Clever ID"
                self.error(
                    line,
                    cid_col,
                    Code.EMAIL_CLEVER_ID_CONFLICT,
                    f"The email {_clip(email)} has {person.clever_id or 'no Clever ID'} on line {line} but "
                    f"{theirs_id} on line {other[1]}.",
                    "One email is one person: give the same Clever ID on every row, or fix the email.",
                )
                return None
        if known is None:
            people[key] = person
        cache[raw] = key
        return key

    def run(self) -> Roster:
        cols = self.parsed.columns
        out = self.out
        missing = -1  # fields[-1] is "" (appended below) for a column the file does not have

        def getter(*names: str) -> Callable[[list[str]], tuple[str, ...]]:
            return itemgetter(*(cols.get(n, missing) for n in names))

        school_get = getter(f.SCHOOL_ID, f.SCHOOL_NAME)
        class_get = getter(f.CLASS_ID, f.CLASS_NAME, f.SCHOOL_ID)
        teacher_cells = (
            f.TEACHER_CLEVER_ID,
            f.TEACHER_EMAIL,
            f.TEACHER_FIRST_NAME,
            f.TEACHER_LAST_NAME,
            f.TEACHER_SIS_ID,
        )
        student_cells = (
            f.STUDENT_CLEVER_ID,
            f.STUDENT_EMAIL,
            f.STUDENT_FIRST_NAME,
            f.STUDENT_LAST_NAME,
            f.STUDENT_SIS_ID,
            f.STUDENT_GRADE_LEVEL,
        )
        teacher_get = getter(*teacher_cells)  # a teacher has no grade: "" is added to its cells
        student_get = getter(*student_cells)
        # only a file without some column needs the "" at fields[-1]
        blank_needed = any(n not in cols for n in (*f.REQUIRED_COLUMNS, *teacher_cells, *student_cells))
        # one row's school, class and teacher cells together: a class has one or a few teachers, so
        # this one lookup stands for the three below on almost every row (filled only once all three
        # were valid, so a cached row can have no problem to report)
        class_teacher_get = getter(f.SCHOOL_ID, f.SCHOOL_NAME, f.CLASS_ID, f.CLASS_NAME, *teacher_cells)
        class_teacher_seen: dict[tuple[str, ...], tuple[str, str]] = {}
        school_seen, class_seen = self.school_seen, self.class_seen
        teacher_seen, student_seen = self.person_seen[TEACHER], self.person_seen[STUDENT]
        # the teacher of each enrollment's first row tells a repeated row (the same teacher again: a
        # warning) from a class's other teacher: kept per class, and per pair only where it differs
        class_first_teacher: dict[str, str | None] = {}
        other_first_teacher: dict[tuple[str, str], str | None] = {}
        class_teachers = out.class_teachers
        duplicate = Code.DUPLICATE_ENROLLMENT
        last_raw_student: tuple[str, ...] = ()
        last_student = ""
        class_id: str | None
        teacher: str | None
        student: str | None
        rows = 0
        sink = self.on_enrollments
        fresh: list[tuple[str, str]] = []
        classes_of = out.classes_of
        owner: str | None = None  # the student whose class list `own` is
        own: list[str] = []
        for line, fields in self.parsed.rows():
            rows += 1
            if blank_needed:
                fields.append("")
            raw_class_teacher = class_teacher_get(fields)
            known_pair = class_teacher_seen.get(raw_class_teacher)
            if known_pair is not None:
                class_id, teacher = known_pair
                raw_student = student_get(fields)
                # a student's rows are usually consecutive: comparing with the previous row's cells
                # is cheaper than hashing them again
                if raw_student == last_raw_student:
                    student = last_student
                else:
                    student = student_seen.get(raw_student) or self.person(line, STUDENT, raw_student)
                    if student is None:
                        continue
                    last_raw_student, last_student = raw_student, student
            else:
                raw_school = school_get(fields)
                school_id = school_seen.get(raw_school)
                if school_id is None:
                    if not any(v.strip() for v in fields):
                        out.warnings.add(
                            Problem(line, None, Code.EMPTY_ROW, f"Line {line} is empty; skipped.")
                        )
                        rows -= 1
                        continue
                    school_id = self.school(line, *raw_school)
                raw_class = class_get(fields)
                class_id = class_seen.get(raw_class)
                if class_id is None and school_id is not None:
                    class_id = self.klass(line, raw_class[0], raw_class[1], school_id, raw_class)
                raw_teacher = (*teacher_get(fields), "")
                teacher = teacher_seen.get(raw_teacher)
                if teacher is None:
                    teacher = self.person(line, TEACHER, raw_teacher)
                raw_student = student_get(fields)
                student = student_seen.get(raw_student)
                if student is None:
                    student = self.person(line, STUDENT, raw_student)
                if class_id is None or student is None:
                    continue
                if teacher is not None:
                    class_teachers.add((class_id, teacher))
                    class_teacher_seen[raw_class_teacher] = (class_id, teacher)
            if student is not owner:  # a student's rows are usually consecutive
                owner = student
                found = classes_of.get(student)
                if found is None:
                    found = classes_of[student] = []
                own = found
            if class_id not in own:
                own.append(class_id)
                first = class_first_teacher.setdefault(class_id, teacher)
                if first != teacher:
                    other_first_teacher[(class_id, student)] = teacher
                if sink is not None:
                    fresh.append((class_id, student))
                    if len(fresh) == SINK_BATCH:
                        sink(fresh)
                        fresh = []
            elif other_first_teacher.get((class_id, student), class_first_teacher[class_id]) == teacher:
                out.warnings.add(
                    Problem(
                        line,
                        None,
                        duplicate,
                        f"The student {_clip(student)} is listed twice in class {_clip(class_id)!r} "
                        "with the same teacher; counted once.",
                    )
                )
        if fresh and sink is not None:
            sink(fresh)
        out.rows = rows
        self.errors.extend(self.parsed.errors)
        if rows == 0 and not self.parsed.errors:
            self.error(1, None, Code.NO_ROWS, "The file has a header but no rows.")
        for key, learner in out.students.items():
            teaching = out.teachers.get(key)
            if teaching is not None and learner.clever_id is not None:
                self.error(
                    learner.line,
                    f.STUDENT_CLEVER_ID,
                    Code.CLEVER_ID_ROLE_CONFLICT,
                    f"The Clever ID {key} is a student on line {learner.line} and a teacher on line "
                    f"{teaching.line}.",
                    "A Clever ID is one person with one role; check both rows.",
                )
        return out


def normalize(parsed: ParsedFile, on_enrollments: PairSink | None = None) -> Roster:
    """Consumes the parsed rows and returns the roster with every problem found. `on_enrollments`
    receives every enrollment pair of the result once, in batches while the file is read (a first import
    writes them meanwhile; a file with errors is rejected as a whole)."""
    if parsed.errors:
        # rejected at the file level: nothing to read
        out = Roster(encoding=parsed.encoding, bom=parsed.bom, delimiter=parsed.delimiter)
        out.errors.extend(parsed.errors)
        out.warnings.extend(parsed.warnings)
        return out
    return _Normalizer(parsed, on_enrollments).run()
