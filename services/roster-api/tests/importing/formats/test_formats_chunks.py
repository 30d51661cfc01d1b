"""A quote-free file is read (and its kept copy cut) a chunk of lines at a time (formats/table.py
`line_chunks`): wherever a chunk ends, the records, their line numbers and the kept copy are what the
csv module gives for the whole file."""

from __future__ import annotations

import csv
import io

import pytest

from roster_api.importing.formats import oneroster, read_files
from roster_api.importing.formats import table as table_mod
from roster_api.importing.formats.scrub import keep_columns
from roster_api.importing.formats.table import Report, Spec, read_table

from .helpers import files_of, problems, view

FILES = [
    b"id,secret,name\r\n1,x,Ann\r\n2,y,Bob\r\n3,z,Cy\r\n",
    b"id,secret,name\r1,x,Ann\r2,y,Bob\r3,z,Cy",  # CR-only line ends, no last line end
    b"id,secret,name\n1,x,Ann\n\n2,y,Bob\r\n3,z,Cy\r4,w,Di\n",  # a blank line, mixed line ends
    b"id,secret,name\n1,x\n2,y,Bob,extra\n3,z,Cy,\n4,w,Di\n",  # short and long rows
    b"id,secret,name\n",  # header only
    b"id,secret,name",  # header only, no line end
]


def _csv_records(data: bytes) -> list[tuple[int, list[str]]]:
    """(line, fields) of every non-blank record after the header, as csv.reader counts lines."""
    reader = csv.reader(io.StringIO(data.decode(), newline=""), strict=False)
    next(reader)
    out: list[tuple[int, list[str]]] = []
    previous = reader.line_num
    for fields in reader:
        line, previous = previous + 1, reader.line_num
        if any(v.strip() for v in fields):
            out.append((line, fields))
    return out


def _csv_keep(data: bytes, keep: tuple[str, ...]) -> bytes:
    rows = csv.reader(io.StringIO(data.decode(), newline=""), strict=False)
    header = next(rows, [])
    indexes = [i for i, name in enumerate(header) if name in keep]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([header[i] for i in indexes])
    for row in rows:
        writer.writerow([row[i] if i < len(row) else "" for i in indexes])
    return out.getvalue().encode()


@pytest.mark.parametrize("chunk", [1, 2, 5, 9, 17, 1 << 20])
@pytest.mark.parametrize("data", FILES)
def test_records_and_lines_are_the_csv_modules_wherever_a_chunk_ends(
    data: bytes, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(table_mod, "CHUNK", chunk)
    spec = Spec("f.csv", ("id", "secret", "name"), ("id",))
    table = read_table("f.csv", data, spec, Report())
    assert table is not None
    assert table.plain
    got = [(line, fields[:3]) for line, fields in table.rows()]
    # a row with a value past the header's columns is an error and left out, as in the csv path
    expected = [
        (line, ([*fields, "", "", ""])[:3])
        for line, fields in _csv_records(data)
        if not any(v.strip() for v in fields[3:])
    ]
    assert got == expected


@pytest.mark.parametrize("chunk", [1, 3, 8, 1 << 20])
@pytest.mark.parametrize("data", FILES)
@pytest.mark.parametrize("keep", [("id", "name"), ("id", "secret"), ("name",)])
def test_the_kept_copy_is_the_csv_modules_wherever_a_chunk_ends(
    data: bytes, keep: tuple[str, ...], chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(table_mod, "CHUNK", chunk)
    assert keep_columns(data, keep) == _csv_keep(data, keep)


def _enrollments_variants() -> dict[str, bytes]:
    """enrollments.csv of the OneRoster 1.1 fixture, as exported and with what a chunk checks for."""
    base = files_of("oneroster11")["enrollments.csv"].decode()
    header, *rows = base.replace("\r\n", "\n").rstrip("\n").split("\n")
    more = [f"X{i},,,C1,sch-1,S1,student,,," for i in range(3)]  # the same pair again: one enrollment
    variants = {
        "as exported": rows,
        "repeated pairs": rows + more,
        "a repeated id": [*rows[:5], rows[2], *rows[5:]],
        "an empty id": [*rows[:4], ",,,C1,sch-1,S1,student,,,", *rows[4:]],
        "a status": [*rows[:3], rows[3].replace(",,,", ",active,,", 1), *rows[3:]],
        "tobedeleted": [*rows[:6], rows[6].replace(",,,", ",tobedeleted,,", 1), *rows[7:]],
        "a blank line": [*rows[:2], "", *rows[2:]],
        "a short line": [*rows[:7], "E99,,,C1,sch-1,S3,student", *rows[7:]],
        "a long line": [*rows[:1], "E98,,,C1,sch-1,S3,student,,,,x", *rows[1:]],
        "spaces and capitals": [
            r.replace(",student,", ", Student ,").replace(",C1,", ", C1 ,") for r in rows
        ],
        "an unknown class": [*rows, "E97,,,C404,sch-1,S1,student,,,"],
        "a teacher as student": [*rows, "E96,,,C1,sch-1,T1,student,,,"],
    }
    return {name: ("\r\n".join([header, *lines]) + "\r\n").encode() for name, lines in variants.items()}


@pytest.mark.parametrize("chunk", [1, 60, 1 << 20])
@pytest.mark.parametrize("variant", list(_enrollments_variants()))
def test_a_chunk_read_column_by_column_reads_as_row_by_row(
    variant: str, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """enrollments.csv read a chunk at a time gives the roster, errors and warnings (with their lines)
    and early pairs of the row-by-row reader, whatever the chunk holds."""
    files = files_of("oneroster11") | {"enrollments.csv": _enrollments_variants()[variant]}
    monkeypatch.setattr(table_mod, "CHUNK", chunk)

    def read_all() -> tuple[object, ...]:
        early: list[tuple[str, str]] = []
        roster = read_files(files, on_enrollments=early.extend)
        return view(roster), problems(roster), problems(roster, "warnings"), early, roster.rows

    chunked = read_all()
    monkeypatch.setattr(oneroster._Chunks, "_take", lambda self, line, lines: False)
    assert chunked == read_all()
