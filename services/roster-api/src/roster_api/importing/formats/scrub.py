"""The copy of a package upload that is kept: only the files and columns an import reads. Clever's
Password, birth dates and guardian contacts, OneRoster's password, demographics and the rest are
dropped, so the retained upload holds nothing the roster does not. Rows stay where they were (one per
line), so a re-run of the kept copy (an approved hold) names the same lines."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain, islice, repeat
from operator import itemgetter
from typing import BinaryIO

from roster_api.importing.formats import clever, oneroster
from roster_api.importing.formats.safezip import UnsafeZip, is_zip, read_members
from roster_api.importing.formats.table import canonical, line_chunks

_STATE = ("sourcedId", "status", "dateLastModified")
KEEP: dict[str, dict[str, tuple[str, ...]]] = {
    "oneroster": {
        "manifest.csv": ("propertyName", "value"),
        "orgs.csv": (*_STATE, "name", "type", "parentSourcedId"),
        "users.csv": (*_STATE, "role", "username", "givenName", "familyName", "email", "grades"),
        "roles.csv": (*_STATE, "userSourcedId", "role"),
        "classes.csv": (*_STATE, "title", "schoolSourcedId"),
        "enrollments.csv": (*_STATE, "classSourcedId", "schoolSourcedId", "userSourcedId", "role"),
    },
    "clever": {
        "schools.csv": ("School_id", "School_name"),
        "students.csv": ("School_id", "Student_id", "First_name", "Last_name", "Student_email", "Grade"),
        "teachers.csv": ("School_id", "Teacher_id", "First_name", "Last_name", "Teacher_email"),
        "sections.csv": ("School_id", "Section_id", "Teacher_id", "Name", "Course_name", "Period"),
        "enrollments.csv": ("School_id", "Section_id", "Student_id"),
    },
}


def _decode(data: bytes) -> tuple[str, str]:
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace"), "cp1252"


ROWS_PER_PIECE = 20_000  # a file with quotes, read by the csv module


def _records(text: str) -> Iterator[list[str]]:
    """The records of a file, header first: split at commas without a double quote (what csv.reader
    reads, several times faster), else the csv module's."""
    if '"' in text:
        return csv.reader(io.StringIO(text, newline=""), strict=False)
    return (fields for lines in line_chunks(text) for fields in map(str.split, lines, repeat(",")))


def _rostered(files: dict[str, bytes], lowered: dict[str, str]) -> tuple[set[str], bool] | None:
    """OneRoster users who become people (students, teachers), and whether that is every row of
    users.csv (nothing to blank); the others' rows keep only their id and role. None: not known here
    (no users file)."""
    roles = {"student", "teacher"}
    source = lowered.get("roles.csv") or lowered.get("users.csv")
    if source is None:
        return None
    rows = _records(_decode(files[source])[0])
    header = [canonical(h) for h in next(rows, [])]
    if not header:
        return None
    id_column = "usersourcedid" if source == lowered.get("roles.csv") else "sourcedid"
    if id_column not in header or "role" not in header:
        return None
    user, role = header.index(id_column), header.index("role")
    shortest = max(user, role) + 1
    ids: set[str] = set()
    every = source == lowered.get("users.csv")
    for row in rows:
        if len(row) >= shortest and row[role].strip().lower() in roles:
            ids.add(row[user])
        else:
            every = False
    return ids, every


def keep_columns(data: bytes, keep: tuple[str, ...], rostered: set[str] | None = None) -> bytes:
    """`rostered`: the ids whose rows keep every kept column (others keep their id, status and role)."""
    text, encoding = _decode(data)
    return "".join(_kept(text, keep, rostered)).encode(encoding, errors="replace")


def _kept(text: str, keep: tuple[str, ...], rostered: set[str] | None) -> Iterator[str]:
    """The kept copy of one file, piece by piece (a chunk of lines or ROWS_PER_PIECE records)."""
    plain = '"' not in text
    if plain:  # a line is its record: cut chunk by chunk, column by column where the lines are alike
        chunks = line_chunks(text)
        first = next(chunks, [])
        header = first[0].split(",") if first else []
        pieces: Iterator[list[str]] = chain([first[1:]], chunks)
    else:
        records = csv.reader(io.StringIO(text, newline=""), strict=False)
        header = next(records, [])
    wanted = {canonical(c) for c in keep}
    indexes = [
        i
        for i, name in enumerate(header)
        if canonical(name) in wanted or clever.TEACHER_N.match(canonical(name))
    ]
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow([header[i] for i in indexes])
    yield out.getvalue()
    names = [canonical(h) for h in header]
    slim = {canonical(c) for c in (*_STATE, "role")}
    cut = _Cut(
        indexes,
        width=max(indexes, default=0) + 1,
        rostered=rostered,
        at=names.index("sourcedid") if "sourcedid" in names else 0,
        kept_always=[names[i] in slim for i in indexes],
        joined=plain and len(indexes) > 1,  # (csv.writer quotes a lone empty cell)
    )
    if plain:
        for lines in pieces:
            if cut.joined and rostered is None:
                columns = _by_columns(lines, indexes, cut.width)
                if columns is not None:
                    yield columns
                    continue
            yield cut.rows(map(str.split, lines, repeat(",")))
        return
    while batch := list(islice(records, ROWS_PER_PIECE)):
        yield cut.rows(batch)


class _Cut:
    """Records -> the kept columns, one line each, as csv.writer writes them."""

    def __init__(
        self,
        indexes: list[int],
        *,
        width: int,
        rostered: set[str] | None,
        at: int,
        kept_always: list[bool],
        joined: bool,
    ) -> None:
        self.indexes, self.width, self.rostered, self.at = indexes, width, rostered, at
        self.kept_always, self.joined = kept_always, joined
        self.pick = itemgetter(*indexes) if len(indexes) > 1 else lambda row: tuple(row[i] for i in indexes)

    def rows(self, records: Iterable[list[str]]) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        write = out.write
        width, rostered, at, pick, joined = self.width, self.rostered, self.at, self.pick, self.joined
        for row in records:
            count = len(row)
            if count < width:
                row += [""] * (width - count)
            cells: Sequence[str] = pick(row)
            if rostered is not None and count > at and row[at] not in rostered:
                cells = [c if always else "" for c, always in zip(cells, self.kept_always, strict=True)]
            if joined:
                write(",".join(cells) + "\r\n")
            else:
                writer.writerow(cells)
        return out.getvalue()


def _by_columns(lines: list[str], indexes: list[int], width: int) -> str | None:
    """Lines of a quote-free file that all have the same count of values (what an export writes), cut
    to `indexes` column by column, without a Python step per row; None for any other (blank or
    ragged lines: the caller goes line by line)."""
    if not lines:
        return ""
    commas = set(map(str.count, lines, repeat(",", len(lines))))
    if len(commas) != 1:
        return None
    count = commas.pop() + 1
    if count < width:
        return None
    if indexes == list(range(width)):  # the first columns (what a OneRoster export drops is last)
        # each line less its last values: one split from the right, not one string per value
        kept = map(itemgetter(0), map(str.rsplit, lines, repeat(","), repeat(count - width)))
        return "\r\n".join(kept) + "\r\n"
    cells = ",".join(lines).split(",")
    columns = [cells[i::count] for i in indexes]
    return "\r\n".join(map(",".join, zip(*columns, strict=True))) + "\r\n"


def scrub_package(data: bytes) -> bytes | None:
    """The kept copy of a zip upload; None when it is not a package we read (a v1 CSV is kept as it
    is: it has only our columns and the ones we ignore)."""
    if not is_zip(data[:4]):
        return None
    try:
        files = read_members(io.BytesIO(data)).files
    except UnsafeZip:
        return None  # refused: the import rejects it; nothing of it is read
    out = io.BytesIO()
    return out.getvalue() if scrub_files(files, out) else None


def scrub_files(files: dict[str, bytes], out: BinaryIO) -> bool:
    """Writes the kept copy of a package's files (a zip) to `out`, file by file and piece by piece;
    False (nothing written) when they are not a package we read."""
    lowered = {name.lower(): name for name in files}
    if oneroster.MANIFEST in lowered:
        keep = KEEP["oneroster"]
    elif clever.is_clever_set(set(files)):
        keep = KEEP["clever"]
    else:
        return False
    rostered = _rostered(files, lowered) if keep is KEEP["oneroster"] else None
    # the fastest deflate: the copy is kept for a while, not shipped, and at the default level
    # compressing a large district's package took as long as reading it
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, columns in keep.items():
            real = lowered.get(name)
            if real is None:
                continue
            only = None
            if name == "users.csv" and rostered is not None and not rostered[1]:
                only = rostered[0]
            text, encoding = _decode(files[real])
            large = len(files[real]) >= zipfile.ZIP64_LIMIT
            with archive.open(real, "w", force_zip64=large) as member:
                for piece in _kept(text, columns, only):
                    member.write(piece.encode(encoding, errors="replace"))
            archive.getinfo(real).external_attr = 0o600 << 16  # (as writestr has it)
    return True
