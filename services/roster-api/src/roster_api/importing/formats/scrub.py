"""The copy of a package upload that is kept: only the files and columns an import reads. Clever's
Password, birth dates and guardian contacts, OneRoster's password, demographics and the rest are
dropped, so the retained upload holds nothing the roster does not. Rows stay where they were (one per
line), so a re-run of the kept copy (an approved hold) names the same lines."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterable, Sequence
from itertools import repeat
from operator import itemgetter

from roster_api.importing.formats import clever, oneroster
from roster_api.importing.formats.safezip import UnsafeZip, is_zip, read_members
from roster_api.importing.formats.table import canonical

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


def _rows(data: bytes) -> list[list[str]]:
    text = _decode(data)[0]
    lines = io.StringIO(text, newline="")
    if '"' in text:
        return list(csv.reader(lines, strict=False))
    return [line.rstrip("\r\n").split(",") for line in lines]  # what csv.reader reads, faster


def _rostered(files: dict[str, bytes], lowered: dict[str, str]) -> set[str] | None:
    """OneRoster users who become people (students, teachers); the others' rows keep only their id
    and role. None: not known here (no users file)."""
    roles = {"student", "teacher"}
    source = lowered.get("roles.csv") or lowered.get("users.csv")
    if source is None:
        return None
    rows = _rows(files[source])
    if not rows:
        return None
    header = [canonical(h) for h in rows[0]]
    id_column = "usersourcedid" if source == lowered.get("roles.csv") else "sourcedid"
    if id_column not in header or "role" not in header:
        return None
    user, role = header.index(id_column), header.index("role")
    return {r[user] for r in rows[1:] if len(r) > max(user, role) and r[role].strip().lower() in roles}


def keep_columns(data: bytes, keep: tuple[str, ...], rostered: set[str] | None = None) -> bytes:
    """`rostered`: the ids whose rows keep every kept column (others keep their id, status and role)."""
    text, encoding = _decode(data)
    lines = io.StringIO(text, newline="")  # a line ends at "\r", "\n" or "\r\n", as the readers count
    # without a double quote a line is its record, split at commas: what csv.reader reads (and
    # csv.writer writes back), several times faster
    plain = '"' not in text
    records: Iterable[list[str]] = (
        (line.rstrip("\r\n").split(",") for line in lines) if plain else csv.reader(lines, strict=False)
    )
    header = next(iter(records), [])
    wanted = {canonical(c) for c in keep}
    indexes = [
        i
        for i, name in enumerate(header)
        if canonical(name) in wanted or clever.TEACHER_N.match(canonical(name))
    ]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([header[i] for i in indexes])
    slim = {canonical(c) for c in (*_STATE, "role")}
    kept_always = [canonical(header[i]) in slim for i in indexes]
    names = [canonical(h) for h in header]
    at = names.index("sourcedid") if "sourcedid" in names else 0
    width = max(indexes, default=0) + 1
    joined = plain and len(indexes) > 1  # (csv.writer quotes a lone empty cell)
    if joined and rostered is None:
        columns = _by_columns(text, indexes, width)
        if columns is not None:
            return (out.getvalue() + columns).encode(encoding, errors="replace")
    pick = itemgetter(*indexes) if len(indexes) > 1 else lambda row: tuple(row[i] for i in indexes)
    write = out.write
    for row in records:
        count = len(row)
        if count < width:
            row += [""] * (width - count)
        cells: Sequence[str] = pick(row)
        if rostered is not None and count > at and row[at] not in rostered:
            cells = [c if always else "" for c, always in zip(cells, kept_always, strict=True)]
        if joined:
            write(",".join(cells) + "\r\n")
        else:
            writer.writerow(cells)
    return out.getvalue().encode(encoding, errors="replace")


def _by_columns(text: str, indexes: list[int], width: int) -> str | None:
    """The rows (after the header) of a quote-free file whose lines all have the same count of values
    (what an export writes), cut to `indexes` column by column, without a Python step per row; None
    for any other file (blank or ragged lines: the caller goes line by line)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")[1:]
    if lines and not lines[-1]:
        del lines[-1]  # the last line's end
    if not lines:
        return ""
    commas = set(map(str.count, lines, [","] * len(lines)))
    if len(commas) != 1:
        return None
    count = commas.pop() + 1
    if count < width:
        return None
    if indexes == list(range(width)):  # the first columns (what a OneRoster export drops is last)
        kept = map(
            ",".join,
            map(itemgetter(slice(width)), map(str.split, lines, repeat(",", len(lines)), repeat(width))),
        )
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
    lowered = {name.lower(): name for name in files}
    if oneroster.MANIFEST in lowered:
        keep = KEEP["oneroster"]
    elif clever.is_clever_set(set(files)):
        keep = KEEP["clever"]
    else:
        return None
    rostered = _rostered(files, lowered) if keep is KEEP["oneroster"] else None
    out = io.BytesIO()
    # the fastest deflate: the copy is kept for a while, not shipped, and at the default level
    # compressing a large district's package took as long as reading it
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, columns in keep.items():
            real = lowered.get(name)
            if real is not None:
                only = rostered if name == "users.csv" else None
                archive.writestr(real, keep_columns(files[real], columns, only))
    return out.getvalue()
