"""One case per validation rule of CSV format v1: the code, the line (header = 1) and the column."""

from __future__ import annotations

import pytest

from roster_api.importing.csv_format import Code, normalize_grade
from roster_api.importing.normalize import Roster, normalize
from roster_api.importing.parse import parse_bytes

from .import_rows import HEADER, S1, S2, T1, csv_bytes, row


def run(data: bytes) -> Roster:
    return normalize(parse_bytes(data))


def found(
    problems: list[tuple[int | None, str | None, str]], code: Code
) -> list[tuple[int | None, str | None]]:
    return [(line, column) for line, column, c in problems if c == code.value]


def errors(data: bytes) -> list[tuple[int | None, str | None, str]]:
    return [(p.line, p.column, p.code.value) for p in run(data).errors.sorted()]


def warnings(data: bytes) -> list[tuple[int | None, str | None, str]]:
    return [(p.line, p.column, p.code.value) for p in run(data).warnings.sorted()]


ROW_ERRORS = [
    # (rule, rows, code, [(line, column)])
    ("school id required", [row(), row(school_id="")], Code.MISSING_VALUE, [(3, "school_id")]),
    ("school name required", [row(school_name=" ")], Code.MISSING_VALUE, [(2, "school_name")]),
    ("class id required", [row(class_id="")], Code.MISSING_VALUE, [(2, "class_id")]),
    ("class name required", [row(), row(class_name="")], Code.MISSING_VALUE, [(3, "class_name")]),
    ("student first name", [row(student_first_name="")], Code.MISSING_VALUE, [(2, "student_first_name")]),
    ("student last name", [row(student_last_name="")], Code.MISSING_VALUE, [(2, "student_last_name")]),
    (
        "teacher name when a teacher is given",
        [row(teacher_last_name="")],
        Code.MISSING_VALUE,
        [(2, "teacher_last_name")],
    ),
    (
        "student needs an id",
        [row(), row(student_clever_id="", student_email="")],
        Code.MISSING_PERSON_ID,
        [(3, "student_clever_id")],
    ),
    (
        "teacher needs an id",
        [row(teacher_clever_id="", teacher_email="")],
        Code.MISSING_PERSON_ID,
        [(2, "teacher_clever_id")],
    ),
    (
        "clever id format",
        [row(student_clever_id="not-an-id-at-all")],
        Code.INVALID_CLEVER_ID,
        [(2, "student_clever_id")],
    ),
    (
        "teacher clever id",
        [row(teacher_clever_id="12345678901234567890123z")],
        Code.INVALID_CLEVER_ID,
        [(2, "teacher_clever_id")],
    ),
    ("email format", [row(student_email="arnold at school")], Code.INVALID_EMAIL, [(2, "student_email")]),
    ("teacher email", [row(teacher_email="frizzle@")], Code.INVALID_EMAIL, [(2, "teacher_email")]),
    (
        "grade vocabulary",
        [row(student_grade_level="Grade Z")],
        Code.INVALID_GRADE,
        [(2, "student_grade_level")],
    ),
    ("id too long", [row(class_id="c" * 256)], Code.VALUE_TOO_LONG, [(2, "class_id")]),
    ("name too long", [row(student_last_name="x" * 256)], Code.VALUE_TOO_LONG, [(2, "student_last_name")]),
    (
        "school has one name",
        [row(), row(class_id="cls-2", school_name="Lincoln Elem.")],
        Code.SCHOOL_NAME_CONFLICT,
        [(3, "school_name")],
    ),
    (
        "class has one name",
        [row(), row(student_clever_id=S2, student_email="b@x.org", class_name="Science 3")],
        Code.CLASS_NAME_CONFLICT,
        [(3, "class_name")],
    ),
    (
        "class has one school",
        [row(), row(school_id="sch-2", school_name="Other", student_clever_id=S2, student_email="b@x.org")],
        Code.CLASS_SCHOOL_CONFLICT,
        [(3, "school_id")],
    ),
    (
        "student has one name",
        [row(), row(class_id="cls-2", student_first_name="Arnie")],
        Code.PERSON_CONFLICT,
        [(3, "student_first_name")],
    ),
    (
        "student has one grade",
        [row(), row(class_id="cls-2", student_grade_level="4")],
        Code.PERSON_CONFLICT,
        [(3, "student_grade_level")],
    ),
    (
        "clever id has one email",
        [row(), row(class_id="cls-2", student_email="other@x.org")],
        Code.PERSON_CONFLICT,
        [(3, "student_email")],
    ),
    (
        "teacher has one name",
        [row(), row(class_id="cls-2", teacher_first_name="Val")],
        Code.PERSON_CONFLICT,
        [(3, "teacher_first_name")],
    ),
    (
        "email has one clever id",
        [row(), row(class_id="cls-2", student_clever_id=S2)],
        Code.EMAIL_CLEVER_ID_CONFLICT,
        [(3, "student_clever_id")],
    ),
    (
        "email with and without clever id",
        [row(), row(class_id="cls-2", student_clever_id="")],
        Code.EMAIL_CLEVER_ID_CONFLICT,
        [(3, "student_clever_id")],
    ),
    (
        "clever id is never teacher and student",
        [row(), row(student_clever_id=T1, student_email="t@x.org")],
        Code.CLEVER_ID_ROLE_CONFLICT,
        [(3, "student_clever_id")],
    ),
]


@pytest.mark.parametrize(("rule", "rows", "code", "where"), ROW_ERRORS, ids=[c[0] for c in ROW_ERRORS])
def test_row_rule(rule: str, rows: list[dict[str, str]], code: Code, where: list[tuple[int, str]]) -> None:
    problems = errors(csv_bytes(rows))
    assert found(problems, code) == where, problems


def test_every_error_is_reported_not_just_the_first() -> None:
    data = csv_bytes(
        [
            row(student_clever_id="123456"),
            row(class_id="cls-2", student_email="nope"),
            row(
                class_id="cls-3", student_grade_level="banana", student_clever_id=S2, student_email="b@x.org"
            ),
        ]
    )
    assert [(p[0], p[2]) for p in errors(data)] == [
        (2, "INVALID_CLEVER_ID"),
        (3, "INVALID_EMAIL"),
        (4, "INVALID_GRADE"),
    ]


def test_student_number_in_clever_id_column_gets_a_hint() -> None:
    (problem,) = run(csv_bytes([row(student_clever_id="100234")])).errors.sorted()
    assert problem.hint is not None
    assert "looks like a Student Number, not the Clever ID" in problem.hint
    (teacher,) = run(csv_bytes([row(teacher_clever_id="T-0042")])).errors.sorted()
    assert teacher.hint is not None
    assert "Teacher or Staff Number" in teacher.hint


def test_conflict_names_both_lines() -> None:
    data = csv_bytes([row(), row(class_id="cls-2"), row(class_id="cls-3", student_last_name="Perlstien")])
    (problem,) = run(data).errors.sorted()
    assert problem.line == 4
    assert "line 4" in problem.message
    assert "line 2" in problem.message


def test_repeats_of_one_code_are_capped_but_counted() -> None:
    rows = [row(class_id=f"c{i}", student_clever_id=str(i), student_email="") for i in range(150)]
    roster = run(csv_bytes(rows))
    assert roster.errors.by_code["INVALID_CLEVER_ID"] == 150
    assert len(roster.errors.listed) == 100
    assert roster.errors.total == 150


def test_duplicate_enrollment_is_a_warning_and_counted_once() -> None:
    roster = run(csv_bytes([row(), row(), row(teacher_clever_id=T1)]))
    assert not roster.errors
    assert found(warnings(csv_bytes([row(), row()])), Code.DUPLICATE_ENROLLMENT) == [(3, None)]
    assert len(roster.enrollments) == 1


def test_a_class_may_have_several_teachers() -> None:
    data = csv_bytes([row(), row(teacher_clever_id=T1.replace("b", "c"), teacher_email="co@x.org")])
    roster = run(data)
    assert not roster.errors
    assert not roster.warnings
    assert len(roster.class_teachers) == 2
    assert len(roster.enrollments) == 1


def test_a_repeated_row_is_told_from_a_co_teacher_per_enrollment() -> None:
    """Class cls-1 has teachers T1 and T2. S1 comes first with T1, S2 first with T2: a row repeating an
    enrollment with its own first teacher is a duplicate; with the class's other teacher it is not."""
    t2 = {"teacher_clever_id": T1.replace("b", "c"), "teacher_email": "co@x.org"}
    rows = [
        row(student_clever_id=S1),  # line 2: S1 with T1
        row(student_clever_id=S2, student_email="s2@x.org", **t2),  # line 3: S2 with T2
        row(student_clever_id=S1, **t2),  # line 4: S1 with the co-teacher: fine
        row(student_clever_id=S2, student_email="s2@x.org"),  # line 5: S2 with T1: fine
        row(student_clever_id=S2, student_email="s2@x.org", **t2),  # line 6: S2 with T2 again
        row(student_clever_id=S1),  # line 7: S1 with T1 again
    ]
    data = csv_bytes(rows)
    assert found(warnings(data), Code.DUPLICATE_ENROLLMENT) == [(6, None), (7, None)]
    assert sorted(run(data).enrollments) == [("cls-1", S1), ("cls-1", S2)]


def test_unknown_column_is_a_warning() -> None:
    data = csv_bytes([{**row(), "Homeroom": "12B"}], header=[*HEADER, "Homeroom"])
    roster = run(data)
    assert not roster.errors
    assert found(warnings(data), Code.UNKNOWN_COLUMN) == [(1, "Homeroom")]


FILE_ERRORS = [
    ("empty file", b"", Code.EMPTY_FILE, [(None, None)]),
    ("only a BOM", b"\xef\xbb\xbf", Code.EMPTY_FILE, [(None, None)]),
    ("NUL bytes", csv_bytes([row()]).replace(b"Arnold", b"Arn\x00ld"), Code.BINARY_FILE, [(None, None)]),
    ("header without rows", csv_bytes([]), Code.NO_ROWS, [(1, None)]),
    (
        "missing required column",
        csv_bytes([row()], header=[h for h in HEADER if h != "class_name"]),
        Code.MISSING_COLUMN,
        [(1, "class_name")],
    ),
    (
        "neither id column",
        csv_bytes([row()], header=[h for h in HEADER if h not in {"student_clever_id", "student_email"}]),
        Code.MISSING_COLUMN,
        [(1, "student_clever_id")],
    ),
    (
        "duplicate column",
        csv_bytes([row()], header=[*HEADER, "School_ID"]),
        Code.DUPLICATE_COLUMN,
        [(1, "school_id")],
    ),
    ("empty header", b"\n\nfoo\n", Code.MISSING_COLUMN, [(1, None)]),
    (
        "unterminated quote",
        csv_bytes([row()]) + b'sch-1,"Lincoln' + b"x" * 200_000,
        Code.MALFORMED_CSV,
        [(3, None)],
    ),
    (
        "wrong number of values",
        csv_bytes([row()]) + b"sch-1,Lincoln,too,few\n",
        Code.WRONG_FIELD_COUNT,
        [(3, None)],
    ),
]


@pytest.mark.parametrize(("rule", "data", "code", "where"), FILE_ERRORS, ids=[c[0] for c in FILE_ERRORS])
def test_file_rule(rule: str, data: bytes, code: Code, where: list[tuple[int | None, str | None]]) -> None:
    problems = errors(data)
    assert found(problems, code) == where, problems


def test_utf16_export_gets_a_hint() -> None:
    data = csv_text_utf16()
    (problem,) = run(data).errors.sorted()
    assert problem.code is Code.BINARY_FILE
    assert problem.hint is not None
    assert "UTF-16" in problem.hint


def csv_text_utf16() -> bytes:
    return csv_bytes([row()]).decode().encode("utf-16")


def test_missing_column_hint_names_the_close_column() -> None:
    header = list(HEADER)
    header[header.index("class_name")] = "class name x"
    (problem,) = run(csv_bytes([row()], header=header)).errors.sorted()
    assert problem.code is Code.MISSING_COLUMN
    assert problem.hint
    assert "class_name_x" in problem.hint


def test_semicolon_line_in_a_comma_file_gets_a_hint() -> None:
    data = csv_bytes([row()]) + ";".join(row().values()).encode() + b"\n"
    (problem,) = run(data).errors.sorted()
    assert (problem.line, problem.code) == (3, Code.WRONG_FIELD_COUNT)
    assert problem.hint
    assert "semicolons" in problem.hint


def test_blank_lines_and_trailing_empty_cells_are_tolerated() -> None:
    data = (
        csv_bytes([row()]) + b"\n" + csv_bytes([row(class_id="cls-2")]).split(b"\n", 1)[1].rstrip() + b",,\n"
    )
    roster = run(data)
    assert not roster.errors
    assert roster.summary()["enrollments"] == 2


def test_all_empty_cells_row_is_skipped_with_warning() -> None:
    data = csv_bytes([row()]) + b"," * 12 + b"\n"
    roster = run(data)
    assert not roster.errors
    assert found(warnings(data), Code.EMPTY_ROW) == [(3, None)]


@pytest.mark.parametrize(
    ("raw", "grade"),
    [
        ("K", "Kindergarten"),
        ("KG", "Kindergarten"),
        ("PK", "PreKindergarten"),
        ("TK", "TransitionalKindergarten"),
        ("01", "1"),
        ("Grade 3", "3"),
        ("3rd", "3"),
        ("12th", "12"),
        ("13", "13"),
        ("Ungraded", "Ungraded"),
        ("PostGraduate", "PostGraduate"),
        (" kindergarten ", "Kindergarten"),
        ("InfantToddler", "InfantToddler"),
        ("14", None),
        ("Grade Z", None),
    ],
)
def test_grades(raw: str, grade: str | None) -> None:
    assert normalize_grade(raw) == grade


def test_emails_are_lowercased_and_clever_ids_lowercased() -> None:
    roster = run(
        csv_bytes([row(student_email=" Arnold@Springfield.Example.org ", student_clever_id=S1.upper())])
    )
    (student,) = roster.students.values()
    assert student.email == "arnold@springfield.example.org"
    assert student.clever_id == S1


def test_header_is_case_and_space_insensitive() -> None:
    header = [f"  {h.upper()} " for h in HEADER]
    data = csv_bytes([dict(zip(header, row().values(), strict=True))], header=header)
    roster = run(data)
    assert not roster.errors
    assert roster.summary()["students"] == 1


def test_email_only_roster_without_clever_id_columns() -> None:
    header = [h for h in HEADER if not h.endswith("clever_id")]
    roster = run(csv_bytes([row(), row(class_id="cls-2")], header=header))
    assert not roster.errors
    assert list(roster.students) == ["arnold@springfield.example.org"]
    assert list(roster.teachers) == ["ms.frizzle@springfield.example.org"]


def test_row_without_a_teacher_is_allowed() -> None:
    roster = run(
        csv_bytes([row(teacher_email="", teacher_first_name="", teacher_last_name="", teacher_clever_id="")])
    )
    assert not roster.errors
    assert roster.summary()["teachers"] == 0
    assert roster.summary()["enrollments"] == 1
