"""`roster-api convert INPUT --to v1 OUT.csv`: what an import would see, written as one v1 CSV (one
row per enrollment, the district's own ids in student_sis_id / teacher_sis_id). Only the columns an
import keeps are written: no passwords, birth dates, contacts or demographics."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from roster_api.importing import csv_format as f
from roster_api.importing.formats import read_upload
from roster_api.importing.normalize import PersonIn, Roster, normalize
from roster_api.importing.parse import parse

V1_COLUMNS = (*f.COLUMNS, *f.OPTIONAL_COLUMNS)


def read_any(path: Path) -> Roster:
    with path.open("rb") as source:
        roster = read_upload(source)
        if roster is None:
            roster = normalize(parse(source))
    return roster


def _person_cells(person: PersonIn | None, *, grade: bool) -> tuple[str, ...]:
    if person is None:
        return ("",) * (5 if grade else 4)
    cells = (person.clever_id or "", person.email or "", person.first_name, person.last_name)
    return (*cells, person.grade or "") if grade else cells


def v1_rows(roster: Roster) -> Iterator[list[str]]:
    """One row per enrollment (with the class's first teacher); a class's other teachers each get a
    row with its first student, as a v1 file says several teachers."""
    teachers_of: dict[str, list[str]] = {}
    for class_id, key in sorted(roster.class_teachers):
        teachers_of.setdefault(class_id, []).append(key)
    first_student: dict[str, str] = {}
    for class_id, student_key in roster.enrollments:
        first_student.setdefault(class_id, student_key)

    def row(class_id: str, teacher_key: str | None, student_key: str) -> list[str]:
        klass = roster.classes[class_id]
        school = roster.schools[klass.school_id]
        teacher = roster.teachers.get(teacher_key) if teacher_key else None
        student = roster.students[student_key]
        t_clever, t_email, t_first, t_last = _person_cells(teacher, grade=False)
        s_clever, s_email, s_first, s_last, s_grade = _person_cells(student, grade=True)
        cells = [
            klass.school_id,
            school.name,
            t_email,
            t_first,
            t_last,
            t_clever,
            class_id,
            klass.name,
            s_first,
            s_last,
            s_clever,
            s_email,
            s_grade,
            student.sis_id or "",
            (teacher.sis_id or "") if teacher else "",  # the order of OPTIONAL_COLUMNS
        ]
        return [f.csv_safe(c) for c in cells]

    for class_id, student_key in sorted(roster.enrollments):
        teachers = teachers_of.get(class_id) or [None]  # type: ignore[list-item]
        yield row(class_id, teachers[0], student_key)
    for class_id, keys in sorted(teachers_of.items()):
        for teacher_key in keys[1:]:
            yield row(class_id, teacher_key, first_student[class_id])


def write_v1(roster: Roster, out: Path) -> int:
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(V1_COLUMNS)
        count = 0
        for cells in v1_rows(roster):
            writer.writerow(cells)
            count += 1
    return count


def convert(
    source: Annotated[
        Path, typer.Argument(metavar="INPUT", help="A v1 CSV, a OneRoster zip, or a zip of Clever's files")
    ],
    out: Annotated[Path, typer.Argument(metavar="OUT.csv", help="The v1 CSV to write")],
    to: Annotated[str, typer.Option("--to", help="The format to write (only v1)")] = "v1",
) -> None:
    """Write what an import would see of INPUT as one v1 CSV (problems go to stderr)."""
    if to != "v1":
        raise typer.BadParameter("only --to v1 is supported", param_hint="--to")
    roster = read_any(source)
    for label, problems in (("error", roster.errors), ("warning", roster.warnings)):
        for p in problems.sorted():
            where = ":".join(str(x) for x in (p.file, p.line, p.column) if x is not None)
            typer.echo(f"{label} {p.code.value} {where} {p.message}", err=True)
    if roster.errors:
        typer.echo(f"{roster.errors.total} error(s): an import would refuse this; nothing written.", err=True)
        raise typer.Exit(1)
    rows = write_v1(roster, out)
    info = ", ".join(f"{k}={v}" for k, v in roster.file_info().items())
    typer.echo(f"{rows} rows written to {out} ({info})", err=True)
