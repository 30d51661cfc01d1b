"""One CSV file of a package (a OneRoster zip, Clever's files): bytes -> header and records, with every
problem naming the file, line and column. Pure.

Lines are counted the way an editor counts them: "\\r", "\\n" and "\\r\\n" each end a line (Clever's own
sample files mix CR-only and LF), the header is line 1, a record starts on the line given."""

from __future__ import annotations

import codecs
import csv
import difflib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter

from roster_api.importing.csv_format import Code, Problem, Problems


@dataclass
class Report:
    """The problems of a whole package."""

    errors: Problems = field(default_factory=Problems)
    warnings: Problems = field(default_factory=Problems)

    def error(
        self,
        file: str | None,
        line: int | None,
        column: str | None,
        code: Code,
        message: str,
        hint: str | None = None,
    ) -> None:
        self.errors.add(Problem(line, column, code, _where(file, line, message), hint, file))

    def warn(
        self,
        file: str | None,
        line: int | None,
        column: str | None,
        code: Code,
        message: str,
        hint: str | None = None,
    ) -> None:
        self.warnings.add(Problem(line, column, code, _where(file, line, message), hint, file))


def _where(file: str | None, line: int | None, message: str) -> str:
    if file is None:
        return message
    return f"{file}, line {line}: {message}" if line is not None else f"{file}: {message}"


@dataclass(frozen=True)
class Spec:
    """The columns of one file. Names are as the format prints them; `case_sensitive` formats
    (OneRoster) still match case-insensitively and warn, so a real export with `Scheduled` headers
    is read."""

    file: str
    columns: tuple[str, ...]  # every defined column, in the specification's order
    required: tuple[str, ...]
    case_sensitive: bool = False
    ordered: bool = False  # OneRoster: defined columns in this order (a warning otherwise)
    # extra columns that are expected and not reported ("ext.*", "metadata.*", Teacher_<n>_id)
    extra_ok: Callable[[str], bool] = lambda _: False


def canonical(name: str) -> str:
    return "_".join(name.replace("\ufeff", "").strip().lower().split())


@dataclass
class Table:
    file: str
    columns: dict[str, int]  # canonical name -> index
    names: dict[str, str]  # canonical name -> the header's spelling
    encoding: str
    width: int
    _records: Iterator[list[str]]
    _reader: csv._reader  # type: ignore[name-defined]
    report: Report
    # a file without a double quote: its text, whose lines after the header (from `_start` on) are
    # one record each, split at commas (the csv module's records, about twice as fast)
    _plain: str | None = None
    _start: int = 0

    @property
    def plain(self) -> bool:
        return self._plain is not None

    def has(self, column: str) -> bool:
        return canonical(column) in self.columns

    def getter(self, *columns: str) -> Callable[[list[str]], tuple[str, ...]]:
        """Cells of these columns from a record (a column the file lacks reads as "")."""
        indexes = [self.columns.get(canonical(c), self.width) for c in columns]
        get = itemgetter(*indexes)
        if len(indexes) == 1:
            return lambda fields: (get(fields),)
        return get

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """(line, fields) per record, fields padded to the header's width plus one "" (what a
        missing column reads). Blank lines are skipped; a record with more values than the header
        is an error and skipped. Consume once."""
        return self._csv_rows() if self._plain is None else self._plain_rows()

    def chunks(self) -> Iterator[tuple[int, list[str]]]:
        """A quote-free file's lines after the header, a chunk at a time: (line of the first, lines
        without their ends). Consume once, instead of `rows`."""
        assert self._plain is not None
        line = 2
        for lines in line_chunks(self._plain, self._start):
            yield line, lines
            line += len(lines)

    def plain_rows(self, line: int, lines: list[str]) -> Iterator[tuple[int, list[str]]]:
        """What `rows` gives for these lines of a chunk (the first on `line`)."""
        width = self.width
        for raw in lines:
            fields = raw.split(",")
            if len(fields) == width:
                fields.append("")
                yield line, fields
            else:
                checked = self._odd(line, fields)
                if checked is not None:
                    yield line, checked
            line += 1

    def _plain_rows(self) -> Iterator[tuple[int, list[str]]]:
        for line, lines in self.chunks():
            yield from self.plain_rows(line, lines)

    def _csv_rows(self) -> Iterator[tuple[int, list[str]]]:
        width = self.width
        reader = self._reader
        previous = reader.line_num
        try:
            for fields in self._records:
                line = previous + 1
                previous = reader.line_num
                if len(fields) == width:
                    fields.append("")
                    yield line, fields
                    continue
                checked = self._odd(line, fields)
                if checked is not None:
                    yield line, checked
        except csv.Error as exc:
            self.report.error(
                self.file,
                previous + 1,
                None,
                Code.MALFORMED_CSV,
                f"The CSV cannot be read from here on: {exc}.",
                'Probably a double quote (") that is opened and never closed.',
            )

    def _odd(self, line: int, fields: list[str]) -> list[str] | None:
        """A record whose count of values is not the header's: blank (None), or padded, or an error."""
        width, count = self.width, len(fields)
        if not any(v.strip() for v in fields):
            return None
        if count > width:
            if any(v.strip() for v in fields[width:]):
                self.report.error(
                    self.file,
                    line,
                    None,
                    Code.WRONG_FIELD_COUNT,
                    f"The line has {count} values but the header has {width} columns.",
                    'A value that contains a comma must be in double quotes ("Smith, Jr.").',
                )
                return None
            del fields[width:]
        else:
            self.report.warn(
                self.file,
                line,
                None,
                Code.WRONG_FIELD_COUNT,
                f"The line has {count} values but the header has {width} columns; the missing ones are "
                "read as empty.",
            )
            fields.extend([""] * (width - count))
        fields.append("")
        return fields


def _decode(file: str, data: bytes, report: Report) -> tuple[str, str] | None:
    if b"\x00" in data:
        report.error(
            file,
            None,
            None,
            Code.BINARY_FILE,
            "The file contains NUL bytes, so it is not a CSV text file.",
            'Save it as "CSV UTF-8".',
        )
        return None
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        report.warn(
            file,
            line,
            None,
            Code.NOT_UTF8,
            f"The file is not UTF-8 (first on line {line}); it was read as Windows-1252.",
            'Check accented names in the preview; save as "CSV UTF-8" to be sure.',
        )
        return data.decode("cp1252", errors="replace"), "windows-1252"


def read_table(file: str, data: bytes, spec: Spec, report: Report) -> Table | None:
    """The file's header checked against `spec`; None when the file is rejected (the problem is in
    `report`). A header-only file gives a table with no rows (and an error or a warning)."""
    if not data.strip(b"\r\n\t ,;" + codecs.BOM_UTF8):
        report.error(
            file, None, None, Code.EMPTY_FILE, "The file is empty.", "Export it again with its rows."
        )
        return None
    decoded = _decode(file, data, report)
    if decoded is None:
        return None
    text, encoding = decoded
    # a file without a double quote: the csv module reads its header only, the rest is split in
    # chunks (a StringIO that is read holds 4 bytes a character)
    plain = '"' not in text
    start = _after_first_line(text) if plain else 0
    lines = io.StringIO(text[:start] if plain else text, newline="")  # a line ends at \r, \n or \r\n
    reader = csv.reader(lines, strict=False)
    try:
        header = next(reader, [])
    except csv.Error as exc:
        report.error(file, 1, None, Code.MALFORMED_CSV, f"The header cannot be read: {exc}.")
        return None
    columns, names = _header(file, header, spec, report)
    if any(canonical(c) not in columns for c in spec.required):
        return None
    table = Table(file, columns, names, encoding, len(header), iter(reader), reader, report)
    if plain:
        table._plain, table._start = text, start
    return table


def _after_first_line(text: str) -> int:
    """Where the second line starts (len(text) when there is one line)."""
    ends = [i for i in (text.find("\r"), text.find("\n")) if i != -1]
    if not ends:
        return len(text)
    end = min(ends)
    return end + 2 if text.startswith("\r\n", end) else end + 1


# characters of a file split into lines at a time (the lines of a large file are many small strings)
CHUNK = 1 << 20


def line_chunks(text: str, start: int = 0) -> Iterator[list[str]]:
    """The lines of a quote-free text from `start` on, about CHUNK characters at a time, as the
    readers count them: "\r", "\n" and "\r\n" each end a line (the last line's end is not an empty
    line)."""
    size = len(text)
    while start < size:
        cut = text.find("\n", start + CHUNK)
        if cut == -1:  # (past this point no "\n": any "\r" ends a line)
            cut = text.find("\r", start + CHUNK)
        end = size if cut == -1 else cut + 1
        chunk = text[start:end]
        start = end
        lines = chunk.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        if chunk[-1] in "\r\n":
            lines.pop()
        yield lines


def _header(
    file: str, header: list[str], spec: Spec, report: Report
) -> tuple[dict[str, int], dict[str, str]]:
    known = {canonical(c): c for c in spec.columns}
    columns: dict[str, int] = {}
    names: dict[str, str] = {}
    unknown: list[str] = []
    for index, raw in enumerate(header):
        name = raw.replace("\ufeff", "").strip()
        key = canonical(name)
        if not key:
            if any(h.strip() for h in header[index + 1 :]):
                report.warn(file, 1, None, Code.UNKNOWN_COLUMN, f"Column {index + 1} has no name; ignored.")
            continue  # trailing empty names, as spreadsheets export them
        if key in columns:
            report.error(
                file,
                1,
                name,
                Code.DUPLICATE_COLUMN,
                f"Column {name!r} appears twice in the header (columns {columns[key] + 1} and {index + 1}).",
                "Keep only one of them.",
            )
            continue
        columns[key] = index
        names[key] = name
        if key not in known:
            if not spec.extra_ok(name):
                unknown.append(name)
            continue
        if spec.case_sensitive and name != known[key]:
            report.warn(
                file,
                1,
                name,
                Code.HEADER_ORDER,
                f"Column {name!r} should be spelt {known[key]!r}; read anyway.",
            )
    for name in unknown:
        close = difflib.get_close_matches(
            canonical(name), [k for k in known if k not in columns], n=1, cutoff=0.75
        )
        hint = f"Is it meant to be {known[close[0]]!r}? Rename the column." if close else None
        report.warn(file, 1, name, Code.UNKNOWN_COLUMN, f"Column {name!r} is not used; ignored.", hint)
    for column in spec.required:
        if canonical(column) not in columns:
            spelt = {canonical(u): u for u in unknown}
            close = difflib.get_close_matches(canonical(column), list(spelt), n=1, cutoff=0.75)
            hint = f"Is {spelt[close[0]]!r} meant to be {column!r}? Rename that column." if close else None
            report.error(
                file,
                1,
                column,
                Code.MISSING_COLUMN,
                f"The header has no {column!r} column; it is required.",
                hint,
            )
    if spec.ordered:
        defined = [canonical(c) for c in spec.columns]
        present = [k for k in columns if k in known]
        expected = [k for k in defined if k in columns]
        if present != expected:
            report.warn(
                file,
                1,
                None,
                Code.HEADER_ORDER,
                "The columns are not in the order the specification gives; read by name.",
            )
    return columns, names
