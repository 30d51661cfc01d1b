"""Fixture packages for the format tests: the same small district as OneRoster 1.1 and 1.2, Clever's
files with 2.x and 1.x headers, and a v1 CSV (data/), zipped in memory."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from roster_api.importing.formats import read_files, read_upload
from roster_api.importing.normalize import Roster

DATA = Path(__file__).parent / "data"
PACKAGES = ("oneroster11", "oneroster12", "clever2", "clever1")


def files_of(package: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((DATA / package).iterdir())}


def zip_bytes(files: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


def read_zip(files: dict[str, bytes]) -> Roster:
    roster = read_upload(io.BytesIO(zip_bytes(files)))
    assert roster is not None
    return roster


def read(package: str, **changes: bytes | None) -> Roster:
    """The fixture package with some files replaced (bytes) or left out (None), read as files."""
    files = files_of(package)
    for name, data in changes.items():
        name = name.replace("__", ".")
        if data is None:
            files.pop(name, None)
        else:
            files[name] = data
    return read_files(files)


def view(roster: Roster) -> dict[str, object]:
    """The roster in a form three formats can be compared in (people by the district's own id)."""
    return {
        "schools": {k: v.name for k, v in roster.schools.items()},
        "classes": {k: (v.name, v.school_id) for k, v in roster.classes.items()},
        "teachers": {(p.sis_id, p.email, p.first_name, p.last_name) for p in roster.teachers.values()},
        "students": {
            (p.sis_id, p.email, p.first_name, p.last_name, p.grade) for p in roster.students.values()
        },
        "class_teachers": {(c, roster.teachers[k].sis_id) for c, k in roster.class_teachers},
        "enrollments": {(c, roster.students[k].sis_id) for c, k in roster.enrollments},
    }


def problems(roster: Roster, kind: str = "errors") -> list[dict[str, object]]:
    found = roster.errors if kind == "errors" else roster.warnings
    return [p.as_dict() for p in found.sorted()]


def codes(roster: Roster, kind: str = "errors") -> set[str]:
    return {str(p["code"]) for p in problems(roster, kind)}
