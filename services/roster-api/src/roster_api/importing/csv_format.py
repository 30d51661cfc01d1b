"""Roster CSV format v1 (docs/design.md, "Roster formats"): columns, grade vocabulary, problem codes, and the
problem value every pipeline step returns instead of raising."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

FORMAT_VERSION = "v1"

SCHOOL_ID = "school_id"
SCHOOL_NAME = "school_name"
TEACHER_EMAIL = "teacher_email"
TEACHER_FIRST_NAME = "teacher_first_name"
TEACHER_LAST_NAME = "teacher_last_name"
TEACHER_CLEVER_ID = "teacher_clever_id"
CLASS_ID = "class_id"
CLASS_NAME = "class_name"
STUDENT_FIRST_NAME = "student_first_name"
STUDENT_LAST_NAME = "student_last_name"
STUDENT_CLEVER_ID = "student_clever_id"
STUDENT_EMAIL = "student_email"
STUDENT_GRADE_LEVEL = "student_grade_level"
# optional: the district's own ids (SIS ids), kept as the person's sis_id
STUDENT_SIS_ID = "student_sis_id"
TEACHER_SIS_ID = "teacher_sis_id"

COLUMNS: tuple[str, ...] = (
    SCHOOL_ID,
    SCHOOL_NAME,
    TEACHER_EMAIL,
    TEACHER_FIRST_NAME,
    TEACHER_LAST_NAME,
    TEACHER_CLEVER_ID,
    CLASS_ID,
    CLASS_NAME,
    STUDENT_FIRST_NAME,
    STUDENT_LAST_NAME,
    STUDENT_CLEVER_ID,
    STUDENT_EMAIL,
    STUDENT_GRADE_LEVEL,
)
# read when present, never required
OPTIONAL_COLUMNS: tuple[str, ...] = (STUDENT_SIS_ID, TEACHER_SIS_ID)

# A file must have these columns. The Clever ID and email columns may each be left out (an email-only
# roster has no Clever ID columns), as long as every person has one of the two.
REQUIRED_COLUMNS: tuple[str, ...] = (
    SCHOOL_ID,
    SCHOOL_NAME,
    CLASS_ID,
    CLASS_NAME,
    TEACHER_FIRST_NAME,
    TEACHER_LAST_NAME,
    STUDENT_FIRST_NAME,
    STUDENT_LAST_NAME,
)
ONE_OF_COLUMNS: tuple[tuple[str, str], ...] = (
    (TEACHER_CLEVER_ID, TEACHER_EMAIL),
    (STUDENT_CLEVER_ID, STUDENT_EMAIL),
)
# ... or the district's own id: a person is known by a Clever ID, else a sis_id, else an email
SIS_ID_COLUMNS = {TEACHER_CLEVER_ID: TEACHER_SIS_ID, STUDENT_CLEVER_ID: STUDENT_SIS_ID}

MAX_ID_LENGTH = 255
MAX_NAME_LENGTH = 255
MAX_EMAIL_LENGTH = 320
# Repeats of one code beyond this are counted, not listed.
MAX_LISTED_PER_CODE = 100

CLEVER_ID_RE = re.compile(r"^[0-9a-f]{24}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")

GRADES: tuple[str, ...] = (
    "InfantToddler",
    "Preschool",
    "PreKindergarten",
    "TransitionalKindergarten",
    "Kindergarten",
    *(str(n) for n in range(1, 14)),
    "PostGraduate",
    "Ungraded",
    "Other",
)


def _grade_aliases() -> dict[str, str]:
    aliases: dict[str, str] = {}
    for grade in GRADES:
        aliases[grade.lower()] = grade
    words = {
        "InfantToddler": ["it", "infant", "toddler", "infant toddler", "infant/toddler", "infanttoddler"],
        "Preschool": ["ps", "pre-school", "pre school", "preschool"],
        "PreKindergarten": ["pk", "prek", "pre-k", "pre k", "pre-kindergarten", "pre kindergarten"],
        "TransitionalKindergarten": ["tk", "transitional kindergarten", "transitional-kindergarten"],
        "Kindergarten": ["k", "kg", "kn", "kinder", "kindergarten", "0", "00"],
        "PostGraduate": ["pg", "post graduate", "post-graduate", "postgraduate"],
        "Ungraded": ["ug", "ungraded", "un-graded", "none"],
        "Other": ["other", "oth"],
    }
    for grade, spellings in words.items():
        for spelling in spellings:
            aliases[spelling] = grade
    ordinal = {1: "st", 2: "nd", 3: "rd"}
    for n in range(1, 14):
        forms = [str(n), f"{n:02d}", f"{n}{ordinal.get(n, 'th')}", f"{n:02d}{ordinal.get(n, 'th')}"]
        for form in list(forms):
            forms += [f"grade {form}", f"grade{form}", f"gr {form}", f"gr{form}", f"g{form}", f"{form} grade"]
        for form in forms:
            aliases[form] = str(n)
    return aliases


GRADE_ALIASES = _grade_aliases()


def normalize_grade(raw: str) -> str | None:
    """Clever's grade vocabulary from the usual spellings; None when unrecognized."""
    key = " ".join(raw.strip().lower().replace("_", " ").split())
    return GRADE_ALIASES.get(key)


class Code(StrEnum):
    """Stable problem codes (the README lists them with their meaning)."""

    # file level
    EMPTY_FILE = "EMPTY_FILE"
    BINARY_FILE = "BINARY_FILE"
    NO_ROWS = "NO_ROWS"
    MISSING_COLUMN = "MISSING_COLUMN"
    DUPLICATE_COLUMN = "DUPLICATE_COLUMN"
    MALFORMED_CSV = "MALFORMED_CSV"
    # file level warnings
    NOT_UTF8 = "NOT_UTF8"
    UNKNOWN_COLUMN = "UNKNOWN_COLUMN"
    # row level
    WRONG_FIELD_COUNT = "WRONG_FIELD_COUNT"
    MISSING_VALUE = "MISSING_VALUE"
    MISSING_PERSON_ID = "MISSING_PERSON_ID"
    INVALID_CLEVER_ID = "INVALID_CLEVER_ID"
    INVALID_EMAIL = "INVALID_EMAIL"
    INVALID_GRADE = "INVALID_GRADE"
    VALUE_TOO_LONG = "VALUE_TOO_LONG"
    SCHOOL_NAME_CONFLICT = "SCHOOL_NAME_CONFLICT"
    CLASS_NAME_CONFLICT = "CLASS_NAME_CONFLICT"
    CLASS_SCHOOL_CONFLICT = "CLASS_SCHOOL_CONFLICT"
    PERSON_CONFLICT = "PERSON_CONFLICT"
    EMAIL_CLEVER_ID_CONFLICT = "EMAIL_CLEVER_ID_CONFLICT"
    CLEVER_ID_ROLE_CONFLICT = "CLEVER_ID_ROLE_CONFLICT"
    # row level warnings
    EMPTY_ROW = "EMPTY_ROW"
    DUPLICATE_ENROLLMENT = "DUPLICATE_ENROLLMENT"
    # against the current roster and licenses
    CLEVER_ID_ROLE_CHANGED = "CLEVER_ID_ROLE_CHANGED"
    SEATS_EXCEEDED = "SEATS_EXCEEDED"
    # standard formats (OneRoster, Clever SFTP files): the package and its files
    UNSAFE_ZIP = "UNSAFE_ZIP"
    UNSUPPORTED_FORMAT = "UNSUPPORTED_FORMAT"
    MISSING_FILE = "MISSING_FILE"
    MANIFEST_MISMATCH = "MANIFEST_MISMATCH"
    HEADER_ORDER = "HEADER_ORDER"
    UNKNOWN_REFERENCE = "UNKNOWN_REFERENCE"
    DUPLICATE_ID = "DUPLICATE_ID"
    ROLE_CONFLICT = "ROLE_CONFLICT"
    INVALID_VALUE = "INVALID_VALUE"
    STATUS_IN_BULK = "STATUS_IN_BULK"
    SKIPPED_RECORD = "SKIPPED_RECORD"
    NOT_ENROLLED = "NOT_ENROLLED"


@dataclass(frozen=True, slots=True)
class Problem:
    """An error or a warning. `line` is 1-based and counts the header as line 1 (the line where the
    record starts, as an editor shows it); None for problems of the whole file."""

    line: int | None
    column: str | None
    code: Code
    message: str
    hint: str | None = None
    # the file of a package (OneRoster zip, Clever's files) the line is in; None for a single CSV
    file: str | None = None

    def as_dict(self) -> dict[str, object]:
        item: dict[str, object] = {
            "line": self.line,
            "column": self.column,
            "code": self.code.value,
            "message": self.message,
        }
        if self.hint:
            item["hint"] = self.hint
        if self.file:
            item["file"] = self.file
        return item


class Problems:
    """Collects problems, listing at most MAX_LISTED_PER_CODE of each code and counting all of them."""

    def __init__(self, limit: int = MAX_LISTED_PER_CODE) -> None:
        self.limit = limit
        self.listed: list[Problem] = []
        self.by_code: dict[str, int] = {}

    def add(self, problem: Problem) -> None:
        seen = self.by_code.get(problem.code.value, 0)
        self.by_code[problem.code.value] = seen + 1
        if seen < self.limit:
            self.listed.append(problem)

    def extend(self, problems: Problems) -> None:
        for problem in problems.listed:
            self.add(problem)
        # count what the other collector counted but did not list
        for code, count in problems.by_code.items():
            listed = sum(1 for p in problems.listed if p.code.value == code)
            if count > listed:
                self.by_code[code] = self.by_code.get(code, 0) + count - listed

    @property
    def total(self) -> int:
        return sum(self.by_code.values())

    def __bool__(self) -> bool:
        return bool(self.by_code)

    def sorted(self) -> list[Problem]:
        return sorted(self.listed, key=lambda p: (p.file or "", p.line or 0, p.column or "", p.code.value))

    def as_report(self) -> dict[str, object]:
        return {
            "total": self.total,
            "by_code": dict(sorted(self.by_code.items())),
            "items": [p.as_dict() for p in self.sorted()],
        }


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: str) -> str:
    """Escapes a cell against formula injection when a spreadsheet opens the exported CSV."""
    return "'" + value if value.startswith(FORMULA_PREFIXES) else value
