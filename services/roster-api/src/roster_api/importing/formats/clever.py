"""Clever's SFTP files (schools, students, teachers, sections, enrollments; staff optional) -> the
roster. Headers are matched by name, case-insensitively and in any order (`School id` = `School_id`),
for the v1.x and v2.x spellings alike. Every upload is a full snapshot."""

from __future__ import annotations

import re

from roster_api.importing.csv_format import Code
from roster_api.importing.formats.build import Builder, Where, grade_of
from roster_api.importing.formats.table import Report, Spec, Table, read_table
from roster_api.importing.normalize import SIS_KEY_PREFIX, STUDENT, TEACHER, ClassIn, SchoolIn

REQUIRED_FILES = ("schools.csv", "students.csv", "teachers.csv", "sections.csv", "enrollments.csv")
OPTIONAL_FILES = ("staff.csv", "admins.csv")
CLASS_KEY_PREFIX = "class:"  # a section in Builder.failed
TEACHER_N = re.compile(r"^teacher_(\d+)_id$")


def _extension(name: str) -> bool:
    return name.lower().startswith("ext.")


def _teacher_or_extension(name: str) -> bool:
    return _extension(name) or bool(TEACHER_N.match("_".join(name.lower().split())))


SCHOOLS = Spec(
    "schools.csv",
    (
        "School_id",
        "School_name",
        "School_number",
        "State_id",
        "Low_grade",
        "High_grade",
        "Principal",
        "Principal_email",
        "School_address",
        "School_city",
        "School_state",
        "School_zip",
        "School_phone",
    ),
    ("School_id", "School_name"),
    extra_ok=_extension,
)
# Only what we read is named here; the rest (DOB, contacts, Password, demographics) is never read.
STUDENT_COLUMNS = (
    "School_id",
    "Student_id",
    "Student_number",
    "State_id",
    "Last_name",
    "Middle_name",
    "First_name",
    "Grade",
    "Gender",
    "Graduation_year",
    "DOB",
    "Race",
    "Hispanic_Latino",
    "Home_language",
    "Ell_status",
    "Frl_status",
    "IEP_status",
    "Student_street",
    "Student_city",
    "Student_state",
    "Student_zip",
    "Student_email",
    "Contact_relationship",
    "Contact_type",
    "Contact_name",
    "Contact_phone",
    "Contact_phone_type",
    "Contact_email",
    "Contact_sis_id",
    "Username",
    "Password",
    "Unweighted_gpa",
    "Weighted_gpa",
)
STUDENTS = Spec(
    "students.csv",
    STUDENT_COLUMNS,
    ("School_id", "Student_id", "First_name", "Last_name"),
    extra_ok=_extension,
)
TEACHERS = Spec(
    "teachers.csv",
    (
        "School_id",
        "Teacher_id",
        "Teacher_number",
        "State_teacher_id",
        "Teacher_email",
        "First_name",
        "Middle_name",
        "Last_name",
        "Title",
        "Username",
        "Password",
    ),
    ("School_id", "Teacher_id", "First_name", "Last_name"),
    extra_ok=_extension,
)
SECTIONS = Spec(
    "sections.csv",
    (
        "School_id",
        "Section_id",
        "Teacher_id",
        "Name",
        "Section_number",
        "Grade",
        "Course_name",
        "Course_number",
        "Course_description",
        "Period",
        "Subject",
        "Term_name",
        "Term_start",
        "Term_end",
    ),
    ("School_id", "Section_id", "Teacher_id"),
    extra_ok=_teacher_or_extension,
)
ENROLLMENTS = Spec(
    "enrollments.csv", ("School_id", "Section_id", "Student_id"), ("School_id", "Section_id", "Student_id")
)


def is_clever_set(names: set[str]) -> bool:
    lowered = {n.lower() for n in names}
    return len(lowered & {"schools.csv", "students.csv", "teachers.csv", "sections.csv"}) >= 2


def read(files: dict[str, bytes], builder: Builder) -> None:
    report = builder.report
    by_lower = {name.lower(): name for name in files}
    missing = [name for name in REQUIRED_FILES if name not in by_lower]
    for name in missing:
        report.error(
            None,
            None,
            None,
            Code.MISSING_FILE,
            f"{name} is missing; Clever's files come as a set of five.",
            "Send schools.csv, students.csv, teachers.csv, sections.csv and enrollments.csv together.",
        )
    if missing:
        return
    tables: dict[str, Table] = {}
    for spec in (SCHOOLS, STUDENTS, TEACHERS, SECTIONS, ENROLLMENTS):
        real = by_lower[spec.file]
        if real != spec.file:
            report.warn(real, None, None, Code.HEADER_ORDER, f"The file should be named {spec.file}.")
        table = read_table(spec.file, files[real], spec, report)
        if table is not None:
            tables[spec.file] = table
    if report.errors:
        return
    builder.files = {TEACHER: "teachers.csv", STUDENT: "students.csv"}
    _schools(tables["schools.csv"], builder)
    _people(tables["teachers.csv"], TEACHER, "Teacher_id", "Teacher_email", builder)
    _people(tables["students.csv"], STUDENT, "Student_id", "Student_email", builder)
    _sections(tables["sections.csv"], builder)
    _enrollments(tables["enrollments.csv"], builder)


def _no_rows(table: Table, count: int, report: Report) -> None:
    if count == 0:
        report.error(table.file, None, None, Code.NO_ROWS, "The file has a header but no rows.")


def _schools(table: Table, builder: Builder) -> None:
    report = builder.report
    first_line: dict[str, int] = {}
    count = 0
    for line, fields in table.rows():
        count += 1
        school_id, name = (v.strip() for v in table.getter("School_id", "School_name")(fields))
        if not school_id or not name:
            column = "School_id" if not school_id else "School_name"
            report.error(table.file, line, column, Code.MISSING_VALUE, f"{column} is empty; it is required.")
            continue
        seen = first_line.setdefault(school_id, line)
        if seen != line:
            report.error(
                table.file,
                line,
                "School_id",
                Code.DUPLICATE_ID,
                f"School {school_id!r} is also on line {seen}.",
            )
            continue
        builder.schools[school_id] = SchoolIn(name, line)
    _no_rows(table, count, report)
    builder.rows += count


def _check_school(table: Table, line: int, school_id: str, builder: Builder) -> bool:
    if school_id in builder.schools:
        return True
    builder.report.error(
        table.file,
        line,
        "School_id",
        Code.UNKNOWN_REFERENCE,
        f"School {school_id!r} is not in schools.csv.",
        "Every School_id must be a school of schools.csv.",
    )
    return False


def _people(table: Table, role: str, id_column: str, email_column: str, builder: Builder) -> None:
    report = builder.report
    get = table.getter(id_column, "School_id", "First_name", "Last_name", email_column, "Grade")
    seen: dict[tuple[str, ...], int] = {}  # the values we keep -> first line (rows repeat per contact)
    by_id: dict[str, int] = {}
    count = 0
    for line, fields in table.rows():
        count += 1
        cells = tuple(v.strip() for v in get(fields))
        sis_id, school_id, first, last, email, grade_raw = cells
        if cells in seen:
            continue  # the same person again (one row per guardian contact)
        if not sis_id:
            report.error(
                table.file, line, id_column, Code.MISSING_VALUE, f"{id_column} is empty; it is required."
            )
            continue
        other = by_id.get(sis_id)
        if other is not None:
            report.error(
                table.file,
                line,
                id_column,
                Code.DUPLICATE_ID,
                f"{id_column} {sis_id!r} is also on line {other} with other values.",
                "Every row of one person must carry the same name, email and grade.",
            )
            continue
        seen[cells] = by_id[sis_id] = line
        if not _check_school(table, line, school_id, builder):
            builder.failed.add(SIS_KEY_PREFIX + sis_id)
            continue
        grade = None
        if role == STUDENT and grade_raw:
            grade = grade_of(grade_raw, ceds=False)
            if grade is None:
                report.warn(
                    table.file,
                    line,
                    "Grade",
                    Code.INVALID_GRADE,
                    f"{grade_raw!r} is not a grade; the grade is left empty.",
                    "Use Kindergarten, 1-13, PreKindergarten, ... (Clever's grades).",
                )
        person = builder.person(
            Where(table.file, line),
            role,
            sis_id,
            first,
            last,
            email,
            grade,
            ("First_name", "Last_name", email_column),
        )
        if person is not None:
            builder.add_person(person)
    _no_rows(table, count, report)
    builder.rows += count


def _sections(table: Table, builder: Builder) -> None:
    report = builder.report
    numbered = {
        int(m.group(1)): name
        for name in table.names.values()
        if (m := TEACHER_N.match("_".join(name.lower().split())))
    }
    teacher_columns = ["Teacher_id", *(numbered[n] for n in sorted(numbered))]
    get = table.getter("Section_id", "School_id", "Name", "Course_name", "Period", *teacher_columns)
    first_line: dict[str, int] = {}
    count = 0
    teachers = builder.people[TEACHER]
    for line, fields in table.rows():
        count += 1
        section_id, school_id, name, course, period, *teacher_ids = (v.strip() for v in get(fields))
        if not section_id:
            report.error(
                table.file, line, "Section_id", Code.MISSING_VALUE, "Section_id is empty; it is required."
            )
            continue
        seen = first_line.setdefault(section_id, line)
        if seen != line:
            report.error(
                table.file,
                line,
                "Section_id",
                Code.DUPLICATE_ID,
                f"Section {section_id!r} is also on line {seen}.",
            )
            continue
        if not _check_school(table, line, school_id, builder):
            builder.failed.add(CLASS_KEY_PREFIX + section_id)
            continue
        if not name:
            name = " - ".join(p for p in (course, period) if p) or section_id
        ok = bool(teacher_ids[0])
        if not ok:
            report.error(
                table.file, line, "Teacher_id", Code.MISSING_VALUE, "Teacher_id is empty; it is required."
            )
        linked: list[str] = []
        for column, teacher_id in zip(teacher_columns, teacher_ids, strict=True):
            if not teacher_id:
                continue
            key = SIS_KEY_PREFIX + teacher_id
            if key in builder.failed:
                continue
            if key not in teachers:
                report.error(
                    table.file,
                    line,
                    column,
                    Code.UNKNOWN_REFERENCE,
                    f"Teacher {teacher_id!r} is not in teachers.csv.",
                )
                ok = False
                continue
            linked.append(key)
        if not ok:
            # a row with an error is left out whole (under the `skip` row policy, its section is
            # kept as stored); its enrollments go with it, without an error each
            builder.failed.add(CLASS_KEY_PREFIX + section_id)
            continue
        builder.classes[section_id] = ClassIn(name, school_id, line)
        for key in linked:
            builder.class_teachers[(section_id, key)] = None
    _no_rows(table, count, report)
    builder.rows += count


def _enrollments(table: Table, builder: Builder) -> None:
    report = builder.report
    get = table.getter("Section_id", "Student_id", "School_id")
    students = builder.people[STUDENT]
    classes = builder.classes
    enrollments = builder.enrollments
    count = 0
    for line, fields in table.rows():
        count += 1
        section_id, student_id, school_id = (v.strip() for v in get(fields))
        klass = classes.get(section_id)
        if klass is None:
            if CLASS_KEY_PREFIX + section_id in builder.failed:
                continue
            report.error(
                table.file,
                line,
                "Section_id",
                Code.UNKNOWN_REFERENCE,
                f"Section {section_id!r} is not in sections.csv.",
            )
            continue
        key = SIS_KEY_PREFIX + student_id
        if key in builder.failed:
            continue
        if key not in students:
            report.error(
                table.file,
                line,
                "Student_id",
                Code.UNKNOWN_REFERENCE,
                f"Student {student_id!r} is not in students.csv.",
            )
            continue
        if school_id and school_id != klass.school_id:
            report.warn(
                table.file,
                line,
                "School_id",
                Code.INVALID_VALUE,
                f"School {school_id!r} differs from the section's school {klass.school_id!r}; the "
                "section's is used.",
            )
        pair = (section_id, key)
        if pair in enrollments:
            report.warn(
                table.file,
                line,
                None,
                Code.DUPLICATE_ENROLLMENT,
                "The same enrollment is listed twice; counted once.",
            )
            continue
        enrollments[pair] = None
    _no_rows(table, count, report)
    builder.rows += count
