"""Standard roster formats besides the v1 CSV: OneRoster 1.1/1.2 CSV (a zip with manifest.csv, bulk or
delta) and Clever's SFTP files (a zip of them, or the loose files gathered by the SFTP intake). Each is
read into the same `Roster` the v1 CSV gives, so everything after the read is the same for all.

`read_upload(source)` is the one entry: it returns None for a single CSV that is not a look-alike (read
it as format v1, as before), else the roster (with its errors when it is refused)."""

from __future__ import annotations

import codecs
import io
from collections.abc import Callable
from typing import BinaryIO

from roster_api.importing.csv_format import Code
from roster_api.importing.formats import clever, oneroster
from roster_api.importing.formats.build import Builder
from roster_api.importing.formats.oneroster import PairSink
from roster_api.importing.formats.safezip import UnsafeZip, is_zip, read_members
from roster_api.importing.formats.table import Report, canonical
from roster_api.importing.normalize import Roster, normalize
from roster_api.importing.parse import parse

# Current roster of a district as OneRoster records, for merging a delta (None: no district here)
CurrentPackage = Callable[[], "oneroster.Package"]

_SDS_V1 = {
    "school.csv",
    "section.csv",
    "student.csv",
    "teacher.csv",
    "studentenrollment.csv",
    "teacherroster.csv",
}
_SDS_V2 = {"relationships.csv", "userflags.csv"}


def rejected(report: Report, format_info: dict[str, object]) -> Roster:
    return Roster(errors=report.errors, warnings=report.warnings, format_info=format_info)


def read_upload(
    source: BinaryIO,
    *,
    current: CurrentPackage | None = None,
    on_enrollments: PairSink | None = None,
    on_files: Callable[[dict[str, bytes]], None] | None = None,
) -> Roster | None:
    """`source`: the stored upload (seekable). None: a plain CSV, for the v1 reader.
    `on_enrollments`: a OneRoster bulk package's student enrollments are handed to it while they are
    read (oneroster.read_package); other packages do not call it. `on_files`: given a zip's files
    once they are read (the kept copy is cut from them)."""
    source.seek(0)
    head = source.read(4096)
    source.seek(0)
    if is_zip(head):
        report = Report()
        try:
            members = read_members(source)
        except UnsafeZip as exc:
            report.error(None, None, None, Code.UNSAFE_ZIP, exc.message, exc.hint)
            return rejected(report, {"format": "zip"})
        if on_files is not None:
            on_files(members.files)
        return read_files(members.files, current=current, on_enrollments=on_enrollments)
    return _lookalike(head)


def read_files(
    files: dict[str, bytes], *, current: CurrentPackage | None = None, on_enrollments: PairSink | None = None
) -> Roster:
    """A set of files (a zip's, or Clever's loose files) -> the roster of the format they are."""
    report = Report()
    names = set(files)
    lowered = {n.lower() for n in names}
    if oneroster.MANIFEST in lowered:
        return _oneroster(files, report, current, on_enrollments)
    if clever.is_clever_set(names):
        builder = Builder(report, {"format": "clever", "version": _clever_version(files)})
        clever.read(files, builder)
        return _finish(builder)
    csvs = [n for n in names if n.lower().endswith(".csv")]
    if len(csvs) == 1 and len(names) == 1:
        single = _lookalike(files[csvs[0]][:4096])
        if single is not None:
            return single
        roster = normalize(parse(io.BytesIO(files[csvs[0]])))
        roster.format_info = roster.file_info() | {"zipped": True}
        return roster
    looks = _looks_like(lowered)
    report.error(
        None,
        None,
        None,
        Code.UNSUPPORTED_FORMAT,
        f"This looks like {looks}, which is not accepted."
        if looks
        else "The zip holds no roster format we know.",
        "Send OneRoster 1.1/1.2 CSV (a zip with manifest.csv), Clever's SFTP files, or one roster CSV "
        "(format v1).",
    )
    return rejected(report, {"format": "unknown", "files": sorted(names)})


def _looks_like(lowered: set[str]) -> str | None:
    if lowered & _SDS_V2 or (_SDS_V1 & lowered and len(_SDS_V1 & lowered) >= 2):
        return "a Microsoft School Data Sync (SDS) export"
    if {"users.csv", "orgs.csv"} <= lowered:
        return "OneRoster 1.0 (no manifest.csv)"
    if "students.csv" in lowered or "teachers.csv" in lowered:
        return "part of Clever's SFTP files (schools.csv and sections.csv are missing)"
    return None


def _oneroster(
    files: dict[str, bytes], report: Report, current: CurrentPackage | None, on_enrollments: PairSink | None
) -> Roster:
    manifest = next(n for n in files if n.lower() == oneroster.MANIFEST)
    files = {oneroster.MANIFEST if n == manifest else n: data for n, data in files.items()}
    read = oneroster.read_manifest(files, report)
    if read is None:
        return rejected(report, {"format": "oneroster"})
    version, modes = read
    package = oneroster.read_package(files, version, modes, report, on_enrollments)
    mode = "delta" if package.delta else "bulk"
    builder = Builder(report, {"format": "oneroster", "version": version, "mode": mode})
    if package.refused:
        return rejected(report, builder.format_info)
    if package.delta:
        if current is None:
            report.error(
                oneroster.MANIFEST,
                None,
                None,
                Code.UNSUPPORTED_FORMAT,
                "A delta package changes a district's roster; it cannot be read on its own.",
                "Import it into the district, or convert a bulk package.",
            )
            return rejected(report, builder.format_info)
        from roster_api.importing.formats.delta import merge

        package = merge(current(), package, report)
    oneroster.build(package, builder)
    return _finish(builder)


def _finish(builder: Builder) -> Roster:
    return builder.finish()


def _clever_version(files: dict[str, bytes]) -> str:
    """Clever's headers: 2.x files spell names with underscores (School_id), 1.x copies of the
    specification with spaces (School id). Both are read the same way."""
    header = next((d for n, d in files.items() if n.lower() == "schools.csv"), b"").split(b"\n", 1)[0]
    return "1.x" if b" id" in header.lower() else "2.x"


_LOOKALIKES: tuple[tuple[set[str], str], ...] = (
    ({"sis_id", "school_sis_id"}, "a Microsoft School Data Sync (SDS) file"),
    ({"sourcedid"}, "a file of a OneRoster package: send the whole zip (with manifest.csv)"),
    ({"student_id", "section_id"}, "Clever's enrollments.csv: send all five of Clever's files in one zip"),
    ({"student_id", "school_id"}, "Clever's students.csv: send all five of Clever's files in one zip"),
    ({"teacher_id", "school_id"}, "one of Clever's files: send all five of Clever's files in one zip"),
    ({"section_id", "school_id"}, "Clever's sections.csv: send all five of Clever's files in one zip"),
    ({"school_id", "school_name", "school_number"}, "Clever's schools.csv: send all five in one zip"),
    ({"user_id", "login_id"}, "a Canvas SIS import file"),
)


def _lookalike(head: bytes) -> Roster | None:
    """A rejected roster when a single CSV is a known look-alike, else None (format v1)."""
    if head.startswith(codecs.BOM_UTF8):
        head = head[len(codecs.BOM_UTF8) :]
    first = head.replace(b"\r", b"\n").split(b"\n", 1)[0].decode("utf-8", errors="replace")
    header = {canonical(c.strip('"')) for sep in (",", "\t", ";") if sep in first for c in first.split(sep)}
    if "class_id" in header or "student_first_name" in header:
        return None  # format v1
    for needed, name in _LOOKALIKES:
        if needed <= header:
            report = Report()
            report.error(
                None,
                1,
                None,
                Code.UNSUPPORTED_FORMAT,
                f"This looks like {name}.",
                "Send the roster CSV (format v1), a OneRoster zip, or Clever's files in one zip.",
            )
            return rejected(report, {"format": "unknown"})
    return None
