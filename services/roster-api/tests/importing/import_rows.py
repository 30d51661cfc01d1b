"""Small helpers to write roster CSVs inline in tests (imported by the import tests only)."""

from __future__ import annotations

import csv
import io

from roster_api.importing.csv_format import COLUMNS

# the format's own column list, so the generator never drifts from what the importer reads
HEADER = list(COLUMNS)
T1 = "5787451bd72145af0700228b"
T2 = "5787451bd72145af0700228c"
S1 = "58a1b2c3d4e5f60718293a4b"
S2 = "58a1b2c3d4e5f60718293a4c"
S3 = "58a1b2c3d4e5f60718293a4d"
BASE = {
    "school_id": "sch-1",
    "school_name": "Lincoln Elementary",
    "teacher_email": "ms.frizzle@springfield.example.org",
    "teacher_first_name": "Valerie",
    "teacher_last_name": "Frizzle",
    "teacher_clever_id": T1,
    "class_id": "cls-1",
    "class_name": "Grade 3 Science",
    "student_first_name": "Arnold",
    "student_last_name": "Perlstein",
    "student_clever_id": S1,
    "student_email": "arnold@springfield.example.org",
    "student_grade_level": "3",
}


def row(**over: str) -> dict[str, str]:
    return {**BASE, **over}


def csv_text(rows: list[dict[str, str]], header: list[str] | None = None, delimiter: str = ",") -> str:
    header = header or HEADER
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    for r in rows:
        writer.writerow([r.get(h, "") for h in header])
    return out.getvalue()


def csv_bytes(rows: list[dict[str, str]], header: list[str] | None = None, delimiter: str = ",") -> bytes:
    return csv_text(rows, header, delimiter).encode()


def student(n: int, **over: str) -> dict[str, str]:
    """Student number n (1..), with its own Clever ID and email."""
    values = {
        "student_first_name": f"Kid{n}",
        "student_last_name": "Doe",
        "student_clever_id": f"{n:024x}",
        "student_email": f"kid{n}@springfield.example.org",
    }
    return row(**{**values, **over})
