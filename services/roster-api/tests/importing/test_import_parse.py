"""The parser: encodings, BOM, separators, quoting, line numbers; and it never raises on any bytes."""

from __future__ import annotations

import csv

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roster_api.importing import parse as parse_module
from roster_api.importing.csv_format import Code
from roster_api.importing.normalize import normalize
from roster_api.importing.parse import NotUtf8, parse_bytes

from .import_rows import HEADER, S1, S2, csv_bytes, csv_text, row

# bytes that look like a roster more often than random noise does
ROSTERISH = st.lists(
    st.sampled_from(
        [b",", b";", b"\t", b'"', b"\r\n", b"\n", b"\r", b"\xef\xbb\xbf", b"\x00", b"\xff", b"\xe9", b"a@b.c"]
        + [h.encode() for h in HEADER]
    )
    | st.binary(max_size=20),
    max_size=60,
).map(b"".join)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.binary(max_size=400) | ROSTERISH | ROSTERISH.map(lambda tail: ",".join(HEADER).encode() + b"\n" + tail)
)
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    parsed = parse_bytes(data)
    roster = normalize(parsed)
    # every problem is well formed
    for problem in [*roster.errors.listed, *roster.warnings.listed]:
        assert problem.line is None or problem.line >= 1
        assert problem.message
    assert roster.rows >= 0
    # the enrollments by student are exactly the enrollment pairs, each once
    by_student = [(c, key) for key, classes in roster.classes_of.items() for c in classes]
    assert sorted(by_student) == sorted(roster.enrollments)


def test_bom_and_crlf() -> None:
    data = b"\xef\xbb\xbf" + csv_text([row()]).replace("\n", "\r\n").encode()
    parsed = parse_bytes(data)
    assert parsed.bom is True
    assert parsed.encoding == "utf-8"
    rows = list(parsed.rows())
    assert rows == [(2, list(row().values()))]
    assert "school_id" in parsed.columns


def test_windows_1252_is_read_with_a_warning_on_its_first_line() -> None:
    data = csv_text(
        [
            row(),
            row(class_id="cls-2", student_last_name="Núñez", student_clever_id="", student_email="n@x.org"),
        ]
    )
    raw = data.encode("cp1252")
    parsed = parse_bytes(raw)
    roster = normalize(parsed)
    assert parsed.encoding == "windows-1252"
    (warning,) = roster.warnings.listed
    assert (warning.code, warning.line) == (Code.NOT_UTF8, 3)
    assert roster.students["n@x.org"].last_name == "Núñez"


def test_semicolon_and_tab_files_are_accepted_and_reported() -> None:
    for delimiter, name in ((";", "semicolon"), ("\t", "tab")):
        roster = normalize(parse_bytes(csv_bytes([row()], delimiter=delimiter)))
        assert not roster.errors
        assert roster.file_info()["delimiter"] == name
        assert roster.summary()["enrollments"] == 1


def test_quoted_commas_and_newlines_keep_line_numbers_of_the_record_start() -> None:
    data = csv_bytes(
        [
            row(student_last_name="Smith, Jr.", student_first_name="Line\nBreak"),
            row(class_id="cls-2", student_email="bad"),
        ]
    )
    parsed = parse_bytes(data)
    roster = normalize(parsed)
    (error,) = roster.errors.listed
    # the first record spans lines 2-3, so the second starts on line 4
    assert (error.line, error.code) == (4, Code.INVALID_EMAIL)


def test_rows_are_streamed_lazily() -> None:
    data = csv_bytes([row(class_id=f"c{i}") for i in range(1000)])
    rows = parse_bytes(data).rows()
    assert next(rows)[0] == 2
    assert next(rows)[0] == 3


def test_utf8_checks_hold_across_ascii_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    # the scan skips decoding ASCII-only chunks: a character split over a chunk boundary, a broken one
    # followed by an ASCII chunk, and line numbers after skipped chunks must all stay right
    monkeypatch.setattr(parse_module, "CHUNK", 16)
    good = csv_text([row(), row(class_id="cls-2", student_last_name="Núñez")]).encode()
    for pad in range(16):  # moves "ú" and "ñ" over every offset within a chunk
        assert parse_bytes(b" " * pad + good).encoding == "utf-8"
    broken = csv_text([row(), row(), row(class_id="cls-2", student_last_name="N\x00")]).encode()
    broken = broken.replace(b"\x00", b"\xc3")  # a lead byte followed by an ASCII byte
    parsed = parse_bytes(broken)
    (warning,) = parsed.warnings.listed
    assert (parsed.encoding, warning.code, warning.line) == ("windows-1252", Code.NOT_UTF8, 4)
    start = broken.index(b"\xc3")
    aligned = broken[:start] + b" " * (15 - start % 16) + broken[start:]  # the lead byte ends a chunk
    assert aligned.index(b"\xc3") % 16 == 15
    parsed = parse_bytes(aligned)
    (warning,) = parsed.warnings.listed
    assert (parsed.encoding, warning.code, warning.line) == ("windows-1252", Code.NOT_UTF8, 4)


def _read_all(
    data: bytes, *, plain_fast_path: bool, assume_utf8: bool = False
) -> tuple[list[tuple[int, list[str]]], list[str], list[str]]:
    parsed = parse_bytes(data, plain_fast_path=plain_fast_path, assume_utf8=assume_utf8)
    rows = list(parsed.rows())
    problems = [repr(p) for p in parsed.errors.listed], [repr(p) for p in parsed.warnings.listed]
    return rows, *problems


# plain files (no double quote): separators, line ends of every kind, blank and short lines
PLAIN = st.lists(
    st.sampled_from([b",", b";", b"\t", b"\r\n", b"\n", b"\r", b" ", b"a", b"\xc3\xa9", b"x@y.org", b"\xe9"])
    | st.binary(max_size=8).filter(lambda b: b'"' not in b and b"\x00" not in b),
    max_size=80,
).map(b"".join)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(PLAIN | PLAIN.map(lambda tail: ",".join(HEADER).encode() + b"\n" + tail))
def test_plain_files_are_read_exactly_as_csv_reader_reads_them(data: bytes) -> None:
    """The fast path for files without quotes must give the csv module's records, lines and problems."""
    assert _read_all(data, plain_fast_path=True) == _read_all(data, plain_fast_path=False)


def test_plain_path_is_taken_only_without_quotes() -> None:
    assert not parse_bytes(csv_bytes([row()])).quoted
    assert parse_bytes(csv_bytes([row(student_last_name="Smith, Jr.")])).quoted


def test_a_field_over_the_csv_limit_is_the_same_error_on_both_paths() -> None:
    previous = csv.field_size_limit(50)
    try:
        data = csv_bytes([row(), row(class_name="x" * 60), row()])
        fast, slow = _read_all(data, plain_fast_path=True), _read_all(data, plain_fast_path=False)
    finally:
        csv.field_size_limit(previous)
    assert fast == slow
    rows, errors, _ = fast
    assert [line for line, _ in rows] == [2]
    assert "MALFORMED_CSV" in errors[0]
    assert "line 3" in errors[0]


def test_classes_by_student_follow_the_enrollments_when_rows_are_not_grouped() -> None:
    rows = [
        row(),
        row(student_clever_id=S2, student_email="s2@x.org", student_first_name="B"),
        row(class_id="cls-2", class_name="Art"),
        row(),  # a duplicate: counted once
    ]
    roster = normalize(parse_bytes(csv_bytes(rows)))
    assert roster.classes_of == {S1: ["cls-1", "cls-2"], S2: ["cls-1"]}
    assert sorted(roster.enrollments) == [("cls-1", S1), ("cls-1", S2), ("cls-2", S1)]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    PLAIN
    | ROSTERISH.filter(lambda b: b"\x00" not in b)
    | PLAIN.map(lambda tail: ",".join(HEADER).encode() + b"\n" + tail)
)
def test_assuming_utf8_reads_the_same_or_says_it_cannot(data: bytes) -> None:
    """The import reads with assume_utf8=True (no UTF-8 pass of its own) and falls back to parse() on
    NotUtf8: so it must either read exactly what parse() reads, or raise NotUtf8 for a file that
    parse() reads as Windows-1252."""
    try:
        fast = _read_all(data, plain_fast_path=True, assume_utf8=True)
    except NotUtf8:
        assert parse_bytes(data).encoding == "windows-1252"
        return
    assert fast == _read_all(data, plain_fast_path=True)
