"""The standard formats read into the same roster: OneRoster 1.1/1.2 and Clever's files (2.x and
1.x headers) give what the v1 CSV gives; every problem names its file, line and column."""

from __future__ import annotations

import io

import pytest

from roster_api.importing.formats import read_upload
from roster_api.importing.normalize import normalize
from roster_api.importing.parse import parse_bytes

from .helpers import DATA, PACKAGES, codes, files_of, problems, read, read_zip, view

EXPECTED = {
    "schools": {"sch-1": "Lincoln Elementary", "sch-2": "Roosevelt High"},
    "classes": {"C1": ("Grade 3 Science", "sch-1"), "C2": ("Chemistry", "sch-2"), "C3": ("Art", "sch-2")},
    "teachers": {
        ("T1", "ms.frizzle@springfield.example.org", "Valerie", "Frizzle"),
        ("T2", "wwhite@springfield.example.org", "Walter", "White"),
        ("T3", None, "Jesse", "Pinkman"),
    },
    "students": {
        ("S1", "arnold@springfield.example.org", "Arnold", "Perlstein", "3"),
        ("S2", None, "Wanda", "Li", "Kindergarten"),
        ("S3", "jane.doe@springfield.example.org", "Jane", "Doe", "10"),
        ("S4", "ann.roe@springfield.example.org", "Ann", "Roe", "11"),
        ("S5", "bob.poe@springfield.example.org", "Bob", "Poe", "12"),
    },
    "class_teachers": {("C1", "T1"), ("C2", "T2"), ("C2", "T3"), ("C3", "T3")},
    "enrollments": {("C1", "S1"), ("C1", "S2"), ("C2", "S3"), ("C2", "S4"), ("C3", "S4"), ("C3", "S5")},
}


def test_the_v1_csv_with_sis_ids_is_the_district() -> None:
    roster = normalize(parse_bytes((DATA / "v1.csv").read_bytes()))
    assert not roster.errors, problems(roster)
    assert view(roster) == EXPECTED


@pytest.mark.parametrize("package", PACKAGES)
def test_every_format_gives_the_same_roster(package: str) -> None:
    roster = read_zip(files_of(package))
    assert not roster.errors, problems(roster)
    assert view(roster) == EXPECTED
    assert roster.summary()["enrollments"] == 6


@pytest.mark.parametrize(
    ("package", "info"),
    [
        ("oneroster11", {"format": "oneroster", "version": "1.1", "mode": "bulk"}),
        ("oneroster12", {"format": "oneroster", "version": "1.2", "mode": "bulk"}),
        ("clever2", {"format": "clever", "version": "2.x"}),
        ("clever1", {"format": "clever", "version": "1.x"}),
    ],
)
def test_the_report_names_the_format_and_version(package: str, info: dict[str, object]) -> None:
    assert read_zip(files_of(package)).file_info() == info


def test_a_plain_csv_is_left_to_the_v1_reader() -> None:
    assert read_upload(io.BytesIO((DATA / "v1.csv").read_bytes())) is None


def test_people_are_keyed_by_the_district_id_and_keep_it() -> None:
    roster = read_zip(files_of("oneroster11"))
    assert set(roster.students) == {"sis:S1", "sis:S2", "sis:S3", "sis:S4", "sis:S5"}
    assert roster.students["sis:S2"].clever_id is None


def test_secrets_and_demographics_never_reach_the_roster() -> None:
    for package in PACKAGES:
        roster = read_zip(files_of(package))
        text = repr(roster) + repr(problems(roster, "warnings"))
        for secret in (
            "Hunter2-secret",
            "2018-02-14",
            "2/14/18",
            "mom@home.example.org",
            "555-0199",
            "Perlstein,",
        ):
            assert secret not in text, (package, secret)


# --- OneRoster quirks: warnings, not crashes ---------------------------------------------------------


def test_status_in_a_bulk_file_is_a_warning_and_tobedeleted_rows_are_left_out() -> None:
    users = (DATA / "oneroster11" / "users.csv").read_bytes().replace(b"S5,,,true", b"S5,tobedeleted,,true")
    users = users.replace(b"S4,,,true", b"S4,active,2026-01-01T00:00:00Z,true")
    roster = read("oneroster11", users__csv=users)
    assert not roster.errors, problems(roster)
    assert "sis:S5" not in roster.students
    assert "sis:S4" in roster.students
    warned = [p for p in problems(roster, "warnings") if p["code"] == "STATUS_IN_BULK"]
    assert [(w["file"], w["line"], w["column"]) for w in warned] == [
        ("users.csv", 8, "status"),
        ("users.csv", 9, "status"),
    ]


def test_header_case_order_misspelt_optional_and_empty_trailing_names_are_warnings() -> None:
    classes = (DATA / "oneroster11" / "classes.csv").read_bytes().splitlines()
    classes[0] = (
        classes[0].replace(b"title", b"Title").replace(b"dateLastModified", b"dataLastModified") + b",,"
    )
    users = (
        (DATA / "oneroster11" / "users.csv")
        .read_bytes()
        .replace(b"givenName,familyName", b"familyName,givenName")
    )
    users = users.replace(b"Valerie,Frizzle", b"Frizzle,Valerie")
    roster = read("oneroster11", classes__csv=b"\n".join(classes) + b"\n", users__csv=users)
    assert not roster.errors, problems(roster)
    assert view(roster)["classes"] == EXPECTED["classes"]
    warned = {(p["file"], p["code"], p["column"]) for p in problems(roster, "warnings")}
    assert ("classes.csv", "HEADER_ORDER", "Title") in warned
    assert ("classes.csv", "UNKNOWN_COLUMN", "dataLastModified") in warned
    assert ("users.csv", "HEADER_ORDER", None) in warned
    hint = next(p for p in problems(roster, "warnings") if p["column"] == "dataLastModified")["hint"]
    assert "dateLastModified" in str(hint)


def test_crlf_cr_only_bom_and_no_final_newline_read_alike() -> None:
    changed = {}
    for name, data in files_of("oneroster11").items():
        text = data.replace(b"\n", b"\r")
        changed[name.replace(".", "__")] = b"\xef\xbb\xbf" + text.rstrip(b"\r")
    roster = read("oneroster11", **changed)
    assert not roster.errors, problems(roster)
    assert view(roster) == EXPECTED


def test_a_class_at_a_department_goes_to_its_school_and_at_the_district_is_an_error() -> None:
    orgs = (DATA / "oneroster11" / "orgs.csv").read_bytes() + b"dep-1,,,Science Dept,department,,sch-2\n"
    classes = (DATA / "oneroster11" / "classes.csv").read_bytes()
    classes = classes.replace(b"Lab,sch-2", b"Lab,dep-1").replace(b"Studio,sch-2", b"Studio,dist-1")
    roster = read("oneroster11", orgs__csv=orgs, classes__csv=classes)
    assert [(p["file"], p["line"], p["column"], p["code"]) for p in problems(roster)] == [
        ("classes.csv", 4, "schoolSourcedId", "INVALID_VALUE")
    ]
    assert roster.classes["C2"].school_id == "sch-2"


def test_grades_come_from_ceds_codes_and_several_grades_warn() -> None:
    users = (DATA / "oneroster11" / "users.csv").read_bytes()
    users = users.replace(b",10,", b',"PS,UG",').replace(b",KG,", b",XX,")
    roster = read("oneroster11", users__csv=users)
    assert not roster.errors
    assert roster.students["sis:S3"].grade == "PostGraduate"
    assert roster.students["sis:S2"].grade is None
    assert [
        (p["line"], p["column"]) for p in problems(roster, "warnings") if p["code"] == "INVALID_GRADE"
    ] == [
        (6, "grades"),
        (7, "grades"),
    ]


# --- errors, each naming file, line and column -------------------------------------------------------


def _where(roster: object) -> list[tuple[object, ...]]:
    return [(p.get("file"), p["line"], p["column"], p["code"]) for p in problems(roster)]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("package", "name"),
    [
        *(("oneroster11", n) for n in ("orgs.csv", "users.csv", "classes.csv", "enrollments.csv")),
        ("oneroster12", "roles.csv"),
        *(
            ("clever2", n)
            for n in ("schools.csv", "students.csv", "teachers.csv", "sections.csv", "enrollments.csv")
        ),
    ],
)
def test_a_missing_empty_or_header_only_file_is_an_error(package: str, name: str) -> None:
    files = files_of(package)
    key = name.replace(".", "__")
    missing = read(package, **{key: None})
    assert "MISSING_FILE" in codes(missing) or "MANIFEST_MISMATCH" in codes(missing, "warnings")
    assert missing.errors
    empty = read(package, **{key: b""})
    assert ("EMPTY_FILE", name) in {(p["code"], p.get("file")) for p in problems(empty)}
    header_only = read(package, **{key: files[name].splitlines(keepends=True)[0]})
    assert ("NO_ROWS", name) in {(p["code"], p.get("file")) for p in problems(header_only)}


def test_a_missing_required_column_names_the_file_and_column() -> None:
    users = (DATA / "oneroster11" / "users.csv").read_bytes().replace(b"givenName", b"givenNme", 1)
    roster = read("oneroster11", users__csv=users)
    assert _where(roster) == [("users.csv", 1, "givenName", "MISSING_COLUMN")]
    assert "givenNme" in str(problems(roster)[0]["hint"])


def test_wrong_encoding_is_read_as_windows_1252_with_a_warning() -> None:
    users = (DATA / "clever2" / "teachers.csv").read_bytes().replace(b"Jesse", "Jessé".encode("cp1252"))
    roster = read("clever2", teachers__csv=users)
    assert not roster.errors
    assert roster.teachers["sis:T3"].first_name == "Jessé"
    assert ("teachers.csv", 4, "NOT_UTF8") in {
        (p["file"], p["line"], p["code"]) for p in problems(roster, "warnings")
    }


def test_unknown_references_are_errors() -> None:
    enrollments = (DATA / "oneroster11" / "enrollments.csv").read_bytes() + b"E12,,,C1,sch-1,S99,student,,,\n"
    assert _where(read("oneroster11", enrollments__csv=enrollments)) == [
        ("enrollments.csv", 13, "userSourcedId", "UNKNOWN_REFERENCE")
    ]
    sections = (DATA / "clever2" / "sections.csv").read_bytes() + b"sch-9,C9,T1,,,,,Lost,,,,,,,,,,\n"
    assert _where(read("clever2", sections__csv=sections)) == [
        ("sections.csv", 5, "School_id", "UNKNOWN_REFERENCE")
    ]
    enrollments = (DATA / "clever2" / "enrollments.csv").read_bytes() + b"sch-1,C1,S99\nsch-1,C7,S1\n"
    assert _where(read("clever2", enrollments__csv=enrollments)) == [
        ("enrollments.csv", 8, "Student_id", "UNKNOWN_REFERENCE"),
        ("enrollments.csv", 9, "Section_id", "UNKNOWN_REFERENCE"),
    ]


def test_duplicate_ids_are_errors() -> None:
    users = (DATA / "oneroster11" / "users.csv").read_bytes() + b"S1,,,true,sch-1,student,x,,X,Y,,,,,,,03,\n"
    assert _where(read("oneroster11", users__csv=users)) == [("users.csv", 12, "sourcedId", "DUPLICATE_ID")]
    students = (DATA / "clever2" / "students.csv").read_bytes()
    students += b"sch-2,S5,1005,IL1005,Poe,,Robert,12,M,2027,,W,N,English,N,N,N,,,,,,,,,,,,,bpoe,,,\n"
    assert _where(read("clever2", students__csv=students)) == [
        ("students.csv", 8, "Student_id", "DUPLICATE_ID")
    ]


def test_a_teacher_in_users_enrolled_as_a_student_is_an_error() -> None:
    enrollments = (DATA / "oneroster11" / "enrollments.csv").read_bytes() + b"E12,,,C3,sch-2,T1,student,,,\n"
    roster = read("oneroster11", enrollments__csv=enrollments)
    assert _where(roster) == [("enrollments.csv", 13, "role", "ROLE_CONFLICT")]
    assert "teacher in users.csv" in str(problems(roster)[0]["message"])
    roles = (DATA / "oneroster12" / "roles.csv").read_bytes() + b"R11,,,T1,secondary,student,,,sch-2,\n"
    assert _where(read("oneroster12", roles__csv=roles)) == [("users.csv", 2, "role", "ROLE_CONFLICT")]


def test_a_ragged_row_with_extra_values_is_an_error_and_a_short_one_a_warning() -> None:
    enrollments = (DATA / "clever2" / "enrollments.csv").read_bytes() + b"sch-1,C1,S3,oops\nsch-2,C3\n"
    roster = read("clever2", enrollments__csv=enrollments)
    assert ("enrollments.csv", 8, None, "WRONG_FIELD_COUNT") in _where(roster)
    assert ("enrollments.csv", 9, "WRONG_FIELD_COUNT") in {
        (p["file"], p["line"], p["code"]) for p in problems(roster, "warnings")
    }


# --- Clever quirks -----------------------------------------------------------------------------------


def test_clever_contact_rows_dedupe_grade_zero_is_kindergarten_and_cross_school_teachers_link() -> None:
    roster = read_zip(files_of("clever2"))
    assert roster.students["sis:S2"].grade == "Kindergarten"
    assert ("C2", "sis:T3") in roster.class_teachers  # Teacher_5_id, a teacher of another school
    assert not roster.warnings, problems(roster, "warnings")


def test_a_section_without_a_name_is_named_from_course_and_period() -> None:
    sections = (DATA / "clever2" / "sections.csv").read_bytes().replace(b",Art,1,11", b",,1,11")
    roster = read("clever2", sections__csv=sections)
    assert roster.classes["C3"].name == "Art - 4"


def test_clever_needs_all_five_files() -> None:
    roster = read("clever2", teachers__csv=None)
    assert _where(roster) == [(None, None, None, "MISSING_FILE")]
    assert "teachers.csv" in str(problems(roster)[0]["message"])
