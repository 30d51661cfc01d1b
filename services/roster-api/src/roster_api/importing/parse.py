"""Bytes -> header and rows. Pure: reads a binary stream it is given, returns problems as values and never
raises on bad input (a property test feeds it arbitrary bytes).

Files are streamed: rows are produced lazily, so a 1 GB file never sits in memory."""

from __future__ import annotations

import codecs
import contextlib
import csv
import difflib
import io
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from roster_api.importing.csv_format import (
    COLUMNS,
    ONE_OF_COLUMNS,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    SIS_ID_COLUMNS,
    Code,
    Problem,
    Problems,
)

CHUNK = 1 << 20
UTF8_BOM = codecs.BOM_UTF8
DELIMITER_NAMES = {",": "comma", "\t": "tab", ";": "semicolon"}


@dataclass
class ParsedFile:
    encoding: str = "utf-8"
    bom: bool = False
    delimiter: str = ","
    columns: dict[str, int] = field(default_factory=dict)
    width: int = 0
    errors: Problems = field(default_factory=Problems)
    warnings: Problems = field(default_factory=Problems)
    quoted: bool = True  # has a double quote somewhere (else rows are read by splitting lines)
    _rows: Iterator[tuple[int, list[str]]] = field(default_factory=lambda: iter(()))

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """(line, fields) for each data record; fields has exactly `width` values. A record that cannot
        be read adds its problem to `errors`/`warnings` and is not produced. Consume once."""
        return self._rows

    def close(self) -> None:
        """Releases the text layer over the caller's stream (the stream itself stays open)."""
        close = getattr(self._rows, "close", None)
        if close is not None:
            close()


class NotUtf8(Exception):
    """Raised while reading a file parsed with `assume_utf8=True` that turns out not to be UTF-8: read
    it again with `parse(source)`, which finds out first (and names the line)."""


def _scan(source: BinaryIO, parsed: ParsedFile, *, check_utf8: bool = True) -> bool:
    """One pass over the bytes: empty, binary (NUL), and (unless told not to) whether it is valid
    UTF-8. False: rejected."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    size = 0
    first = b""
    utf8 = check_utf8
    quoted = False
    while True:
        chunk = source.read(CHUNK)
        if not chunk:
            break
        if not first:
            first = chunk[:4]
        size += len(chunk)
        quoted = quoted or b'"' in chunk
        if b"\x00" in chunk:
            utf16 = first.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
            parsed.errors.add(
                Problem(
                    None,
                    None,
                    Code.BINARY_FILE,
                    "The file contains NUL bytes, so it is not a CSV text file.",
                    'It looks like a UTF-16 ("Unicode text") export: save it as "CSV UTF-8" instead.'
                    if utf16
                    else "Export the roster as CSV (comma-separated values), not as a spreadsheet file.",
                )
            )
            return False
        if utf8:
            try:
                # plain ASCII (most rosters) is UTF-8 as it is, unless a multi-byte character began at
                # the end of the previous chunk: then the decoder must see it to report it broken
                if not chunk.isascii() or decoder.getstate()[0]:
                    decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                pending = len(decoder.getstate()[0])
                line = _line_at(source, size - len(chunk) + max(0, exc.start - pending))
                utf8 = False
                parsed.warnings.add(
                    Problem(
                        line,
                        None,
                        Code.NOT_UTF8,
                        f"The file is not UTF-8 (first on line {line}); it was read as Windows-1252.",
                        "Check the accented names in the list of changes (the names this file changes are "
                        'listed under readiness in the report); save the file as "CSV UTF-8" to be sure.',
                    )
                )
    if utf8:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            utf8 = False
            parsed.warnings.add(
                Problem(
                    _line_at(source, size),
                    None,
                    Code.NOT_UTF8,
                    "The file ends in the middle of a UTF-8 character; it was read as Windows-1252.",
                )
            )
    parsed.encoding = "utf-8" if utf8 or not check_utf8 else "windows-1252"
    parsed.quoted = quoted
    parsed.bom = first.startswith(UTF8_BOM)
    if size == 0 or (parsed.bom and size == len(UTF8_BOM)):
        parsed.errors.add(Problem(None, None, Code.EMPTY_FILE, "The file is empty."))
        return False
    return True


def _require_utf8(source: BinaryIO) -> None:
    """For a parse with assume_utf8=True that stops before decoding everything (a problem with the
    header, an unreadable record): raises NotUtf8 unless the whole file is UTF-8, so that it reports
    what parse() reports."""
    position = source.tell()
    source.seek(0)
    checked = ParsedFile()
    _scan(source, checked)
    source.seek(position)
    if checked.encoding != "utf-8":
        raise NotUtf8


def _line_at(source: BinaryIO, offset: int) -> int:
    """The line of the byte at `offset` (counted only when a problem needs it: it reads the file up to
    there again)."""
    position = source.tell()
    source.seek(0)
    newlines = 0
    while offset > 0 and (chunk := source.read(min(CHUNK, offset))):
        newlines += chunk.count(b"\n")
        offset -= len(chunk)
    source.seek(position)
    return newlines + 1


def _sniff_delimiter(first_line: str) -> str:
    counts = {d: first_line.count(d) for d in DELIMITER_NAMES}
    best = max(counts, key=lambda d: (counts[d], d == ","))
    return best if counts[best] else ","


def canonical_column(name: str) -> str:
    return "_".join(name.replace("\ufeff", "").strip().lower().replace("-", " ").split())


def _header(names: list[str], parsed: ParsedFile) -> None:
    known = {*COLUMNS, *OPTIONAL_COLUMNS}
    unknown: list[str] = []
    for index, raw in enumerate(names):
        name = canonical_column(raw)
        if not name:
            continue  # trailing delimiters, as spreadsheets export them
        if name not in known:
            unknown.append(name)
            parsed.warnings.add(
                Problem(1, raw.strip(), Code.UNKNOWN_COLUMN, f"Column {raw.strip()!r} is not used; ignored.")
            )
            continue
        if name in parsed.columns:
            parsed.errors.add(
                Problem(
                    1,
                    name,
                    Code.DUPLICATE_COLUMN,
                    f"Column {name!r} appears twice in the header (columns "
                    f"{parsed.columns[name] + 1} and {index + 1}).",
                    "Keep only one of them.",
                )
            )
            continue
        parsed.columns[name] = index

    def hint_for(column: str) -> str | None:
        close = difflib.get_close_matches(column, unknown, n=1, cutoff=0.6)
        if close:
            return f"Is {close[0]!r} meant to be {column!r}? Rename that column."
        if len(names) == 1 and parsed.delimiter == ",":
            return "The header has a single column: is the file separated by something other than commas?"
        return None

    for column in REQUIRED_COLUMNS:
        if column not in parsed.columns:
            parsed.errors.add(
                Problem(
                    1,
                    column,
                    Code.MISSING_COLUMN,
                    f"The header has no {column!r} column; it is required.",
                    hint_for(column),
                )
            )
    for clever_id, email in ONE_OF_COLUMNS:
        if not {clever_id, email, SIS_ID_COLUMNS[clever_id]} & parsed.columns.keys():
            parsed.errors.add(
                Problem(
                    1,
                    clever_id,
                    Code.MISSING_COLUMN,
                    f"The header needs a {clever_id!r} or an {email!r} column (or both).",
                    hint_for(clever_id) or hint_for(email),
                )
            )


def _odd_record(line: int, fields: list[str], parsed: ParsedFile) -> list[str] | None:
    """A record whose field count differs from the header's: blank, trailing empty cells, or an error."""
    width = parsed.width
    count = len(fields)
    if not fields:
        return None  # a blank line
    if count > width and not any(fields[width:]):
        return fields[:width]  # trailing empty cells, as spreadsheets export them
    if not any(f.strip() for f in fields):
        parsed.warnings.add(Problem(line, None, Code.EMPTY_ROW, f"Line {line} is empty; skipped."))
        return None
    delimiter = parsed.delimiter
    joined = delimiter.join(fields)
    hint = None
    if delimiter == "," and (";" in joined or "\t" in joined):
        other = "semicolons" if ";" in joined else "tabs"
        hint = f"This line seems to be separated by {other}; the header by commas. Use one separator."
    elif count > width:
        hint = 'A value that contains a comma must be in double quotes ("Smith, Jr.").'
    parsed.errors.add(
        Problem(
            line,
            None,
            Code.WRONG_FIELD_COUNT,
            f"Line {line} has {count} values but the header has {width} columns.",
            hint,
        )
    )
    return None


def _release(text: io.TextIOWrapper) -> None:
    # detach, not close: the stream belongs to the caller
    with contextlib.suppress(ValueError):  # already detached
        text.detach()


def parse(source: BinaryIO, *, plain_fast_path: bool = True, assume_utf8: bool = False) -> ParsedFile:
    """Reads `source` (a seekable binary stream) lazily. Check `errors` after consuming `rows()`.
    `plain_fast_path=False` reads a file without quotes through csv.reader too (tests compare both).
    `assume_utf8=True` skips the UTF-8 check of the first pass (a fifth of a large file's parse) and
    decodes strictly instead: parse() or rows() raise NotUtf8 if the file is not UTF-8 after all."""
    parsed = ParsedFile()
    try:
        source.seek(0)
        if not _scan(source, parsed, check_utf8=not assume_utf8):
            if assume_utf8:
                _require_utf8(source)
            return parsed
        source.seek(len(UTF8_BOM) if parsed.bom else 0)
    except (OSError, ValueError) as exc:
        parsed.errors.add(Problem(None, None, Code.MALFORMED_CSV, f"The file cannot be read ({exc})."))
        return parsed
    text = io.TextIOWrapper(
        source,
        encoding="utf-8" if parsed.encoding == "utf-8" else "cp1252",
        errors="strict" if assume_utf8 else "replace",
        newline="",
    )
    try:
        first_line = text.readline()
    except UnicodeDecodeError as exc:
        _release(text)
        raise NotUtf8 from exc
    parsed.delimiter = _sniff_delimiter(first_line)
    reader = csv.reader(itertools.chain([first_line], text), delimiter=parsed.delimiter, strict=False)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        parsed.errors.add(Problem(1, None, Code.MALFORMED_CSV, f"The header cannot be read: {exc}."))
        header = None
    except UnicodeDecodeError as exc:  # a quoted header over several lines
        _release(text)
        raise NotUtf8 from exc
    if not parsed.errors and (header is None or not any(h.strip() for h in header)):
        parsed.errors.add(Problem(1, None, Code.MISSING_COLUMN, "The first line (the header) is empty."))
    if header is not None and not parsed.errors:
        parsed.width = len(header)
        _header(header, parsed)
    if parsed.errors:
        _release(text)
        if assume_utf8:
            _require_utf8(source)
        return parsed

    def csv_rows() -> Iterator[tuple[int, list[str]]]:
        width = parsed.width
        previous = reader.line_num
        try:
            for fields in reader:
                line = previous + 1  # the record may span lines (quoted newlines): where it starts
                previous = reader.line_num
                if len(fields) == width:
                    yield line, fields
                    continue
                checked = _odd_record(line, fields, parsed)
                if checked is not None:
                    yield line, checked
        except csv.Error as exc:
            unreadable(previous + 1, exc)  # the record that failed starts after the last one read
        except UnicodeDecodeError as exc:
            raise NotUtf8 from exc
        finally:
            _release(text)

    def plain_rows() -> Iterator[tuple[int, list[str]]]:
        """The records csv.reader gives for a file without a double quote (most exports), about twice
        as fast: nothing is quoted, so each line is one record, split at the delimiter. A line ends at
        "\n", "\r" or "\r\n" for both (newline="" above); a blank line is no fields."""
        width = parsed.width
        delimiter = parsed.delimiter
        limit = csv.field_size_limit()
        line = reader.line_num
        try:
            for raw in text:
                line += 1
                value = raw.rstrip("\r\n")
                fields = value.split(delimiter) if value else []
                if len(value) > limit and max(map(len, fields)) > limit:
                    raise csv.Error(f"field larger than field limit ({limit})")
                if len(fields) == width:
                    yield line, fields
                    continue
                checked = _odd_record(line, fields, parsed)
                if checked is not None:
                    yield line, checked
        except csv.Error as exc:
            unreadable(line, exc)
        except UnicodeDecodeError as exc:
            raise NotUtf8 from exc
        finally:
            _release(text)

    def unreadable(start: int, exc: csv.Error) -> None:
        if assume_utf8:  # the rest of the file is not read
            _require_utf8(source)
        parsed.errors.add(
            Problem(
                start,
                None,
                Code.MALFORMED_CSV,
                f"The CSV cannot be read from line {start} on: {exc}.",
                'Probably a double quote (") that is opened and never closed.',
            )
        )

    parsed._rows = csv_rows() if parsed.quoted or not plain_fast_path else plain_rows()
    return parsed


def parse_bytes(data: bytes, *, plain_fast_path: bool = True, assume_utf8: bool = False) -> ParsedFile:
    return parse(io.BytesIO(data), plain_fast_path=plain_fast_path, assume_utf8=assume_utf8)
