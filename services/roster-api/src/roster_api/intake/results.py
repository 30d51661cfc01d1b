"""The answer to an SFTP upload or a nightly sync, written into the district's own SFTP folder
(`results/`), so the district reads it with the same client it uploaded with:

    results/roster.csv.20261129T020005Z-3f9a1c.txt          status, counts, changes, seats, first errors
    results/roster.csv.20261129T020005Z-3f9a1c.errors.csv   every listed error and warning (when any)

Both are written under a hidden temporary name and renamed, so a client never reads half a file. The CSV
is escaped against formula injection (docs/security.md C3); the text file holds no control characters."""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import secrets
import stat
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa

from roster_api.importing import changes as changes_mod
from roster_api.importing.parse import DELIMITER_NAMES
from roster_api.models import District, ImportRun
from roster_api.settings import Settings

log = logging.getLogger("roster_api.sftp.results")

RESULTS_DIR = "results"
FIRST_ERRORS = 20
ENTITY_LABELS = {
    "schools": "schools",
    "teachers": "teachers",
    "classes": "classes",
    "students": "students",
    "class_teachers": "class teachers",
    "enrollments": "enrollments",
    "accounts": "product accounts",
}
PRODUCT_LABELS = {"rocketlit": "RocketLit", "innerorbit": "InnerOrbit"}
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n")


class ResultNames(NamedTuple):
    """The files written beside the results text (None: not written)."""

    errors: str | None
    changes: str | None


def district_sftp_dir(settings: Settings, district_id: str) -> Path:
    return settings.data_dir / "sftp" / district_id


def csv_cell(value: object) -> str:
    """A cell a spreadsheet shows as text, never evaluates (`=1+2` -> `'=1+2`); quoting is csv's job."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def _plain(value: object) -> str:
    """One line of printable text: values quoted from a CSV may hold anything."""
    return "".join(ch if ch.isprintable() else " " for ch in str(value))


_STATUS = {
    "applied": "APPLIED: your roster was updated with this file.",
    "skipped": "SKIPPED: this file is identical to the last one applied, so nothing needed to change.",
    "held": "HELD: nothing was changed yet. This file would change a large part of your roster, so it "
    "waits for someone to approve it (the reasons are below).",
    "validated": "CHECKED: the file was only checked; nothing was changed.",
    "discarded": "DISCARDED: this held file was discarded; nothing was changed.",
    "superseded": "REPLACED: a newer file of yours was imported after this one was held, so this one "
    "will never be applied; nothing was changed by it.",
    "expired": "EXPIRED: nobody approved this held file in time; nothing was changed by it.",
    "queued": "WAITING: the import has not started yet.",
    "running": "RUNNING: the import has not finished yet.",
}
_SOURCES = {"sftp": "uploaded by SFTP", "nightly": "the nightly sync", "api": "uploaded through the API"}


def _status_line(run: ImportRun, report: Mapping[str, Any]) -> str:
    if run.status == "rejected":
        errors = run.error_count or int(report.get("error_count") or 0)
        return (
            f"REJECTED: nothing was changed. The file has {_n(errors)} error(s); fix them and upload the "
            "file again."
        )
    if run.status == "failed":
        return "FAILED: nothing was changed. " + (
            run.failure or "An internal error stopped the import; contact support with the reference below."
        )
    return _STATUS.get(run.status, run.status.upper())


def _next_steps(run: ImportRun, report: Mapping[str, Any], names: ResultNames) -> list[str]:
    """What the district does now, in a sentence or two."""
    changes = f"results/{names.changes}" if names.changes else "the list of changes"
    errors = f" (all of them are in results/{names.errors})" if names.errors else ""
    newer = getattr(run, "superseded_by", None)
    steps = {
        "applied": "Nothing, unless a point under 'Needs your attention' applies. Your next file replaces "
        "this roster.",
        "skipped": "Nothing: your roster is already up to date.",
        "held": f"Look through the changes in {changes}. If they are what you expect, approve this "
        "import in the district console (Imports), or ask RocketLit support to approve it (quote the "
        "reference). If not, correct the file and upload it again: a newer file replaces this one.",
        "validated": f"If the changes in {changes} are what you expect, upload the same file under its "
        "usual name (without .preview) to apply it.",
        "rejected": f"Correct the errors below{errors} and upload the file again.",
        "failed": "Upload the file again. If it fails again, contact RocketLit support and quote the "
        "reference.",
        "discarded": "Nothing was changed. Upload a corrected file when you are ready.",
        "superseded": f"Nothing: the newer file{f' (reference {newer})' if newer else ''} is the one "
        "that counts.",
        "expired": "If this file is still what you want, upload it again.",
    }
    step = steps.get(run.status)
    return ["What to do next:", f"  {step}", ""] if step else []


def _n(value: object) -> str:
    """A count with thousands separators (`12,345`)."""
    try:
        return f"{int(str(value)):,}"
    except ValueError:
        return _plain(value)


def _zone(name: str | None) -> tzinfo:
    try:
        return ZoneInfo(name) if name else UTC
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def _when(moment: datetime, zone: tzinfo) -> str:
    utc = moment.astimezone(UTC)
    if zone is UTC:
        return f"{utc:%Y-%m-%d %H:%M:%S} UTC"
    local = moment.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()} ({utc:%Y-%m-%d %H:%M:%S} UTC)"


def _where(item: Mapping[str, Any], row_info: Mapping[int, str]) -> str:
    where = []
    if item.get("file"):
        where.append(f"file {item['file']}")
    if item.get("line") is not None:
        where.append(f"line {_n(item['line'])}")
    if item.get("column"):
        where.append(f"column {item['column']}")
    text = ", ".join(where) or "whole file"
    info = row_info.get(item["line"]) if item.get("line") is not None else None
    return f"{text} ({info})" if info else text


def _problem_line(item: Mapping[str, Any], row_info: Mapping[int, str], names: ResultNames) -> str:
    text = f"{_where(item, row_info)}: {item.get('message') or item.get('code') or ''}"
    hint = item.get("hint")
    if item.get("code") == "NOT_UTF8":
        where = f"results/{names.changes}" if names.changes else "the list of changes"
        hint = (
            f"Check the names under 'Needs your attention' and in {where}; save the file as \"CSV UTF-8\" "
            "to be sure."
        )
    if hint:
        text += f" What to do: {hint}"
    return "  - " + _plain(text)


def _problems(
    title: str, items: list[Mapping[str, Any]], total: int, names: ResultNames, row_info: Mapping[int, str]
) -> list[str]:
    if not total and not items:
        return []
    shown = items[:FIRST_ERRORS]
    lines = [f"{title}: {_n(total)}" + (f" (the first {len(shown)} below)" if total > len(shown) else "")]
    lines += [_problem_line(item, row_info, names) for item in shown]
    if names.errors:
        lines.append(f"  All listed {title.lower()} are in results/{names.errors}")
    return [*lines, ""]


def _changes(changes: Mapping[str, Any], names: ResultNames) -> list[str]:
    rows = [(ENTITY_LABELS.get(name, name), c) for name, c in changes.items() if isinstance(c, Mapping)]
    if not rows:
        return []
    kinds = ("created", "updated", "deactivated", "reactivated", "unchanged")
    width = max(len(label) for label, _ in rows) + 2
    lines = ["What this file changes:", " " * (width + 2) + "".join(f"{k:>13}" for k in kinds)]
    for label, change in rows:
        lines.append(f"  {label:<{width}}" + "".join(f"{_n(change.get(k) or 0):>13}" for k in kinds))
    if names.changes:
        lines.append(f"  Each change, with names and old and new values, is in results/{names.changes}")
    return [*lines, ""]


def _seats(seats: Mapping[str, Any]) -> list[str]:
    lines = []
    for product, info in sorted(seats.items()):
        if not isinstance(info, Mapping):
            continue
        enforced = "a hard limit" if info.get("enforced") else "not a hard limit"
        name = PRODUCT_LABELS.get(product, product)
        lines.append(
            f"  {name}: {_n(info.get('used'))} students of {_n(info.get('licensed'))} seats ({enforced})"
        )
    return ["Seats:", *lines, ""] if lines else []


def _attention(readiness: list[Mapping[str, Any]]) -> list[str]:
    """The readiness warnings: what stops people from using a product although the file is fine."""
    if not readiness:
        return []
    lines = ["Needs your attention:"]
    for warning in readiness:
        lines.append("  - " + _plain(warning.get("message") or warning.get("code") or ""))
        if warning.get("hint"):
            lines.append("    What to do: " + _plain(warning["hint"]))
        for row in warning.get("rows") or []:
            field = str(row.get("field") or "").replace("_", " ")
            value = f"{row['old']} -> {row['new']}" if row.get("old") is not None else str(row.get("new"))
            lines.append(_plain(f"    line {_n(row.get('line'))}, {field}: {value}"))
    return [*lines, ""]


def _summary(report: Mapping[str, Any]) -> list[str]:
    summary = report.get("summary")
    if not isinstance(summary, Mapping) or not summary:
        return []
    counts = ", ".join(f"{k} {_n(v)}" for k, v in summary.items() if k != "rows")
    lines = [f"Rows read: {_n(summary.get('rows', 0))} ({counts})"]
    if report.get("encoding") or report.get("delimiter"):
        encoding = "UTF-8" if report.get("encoding") == "utf-8" else report.get("encoding", "?")
        lines.append(f"Format:   {encoding}, {report.get('delimiter', '?')}-separated")
    return [*lines, ""]


def render_text(
    run: ImportRun,
    csv_name: str | None,
    *,
    zone: tzinfo = UTC,
    changes_name: str | None = None,
    row_info: Mapping[int, str] | None = None,
) -> str:
    """The results text. `csv_name`/`changes_name`: the errors and changes files written beside it;
    `zone`: the district's time zone; `row_info`: the key values of the rows the listed errors are on."""
    report: Mapping[str, Any] = run.report or {}
    names = ResultNames(csv_name, changes_name)
    info = row_info or {}
    finished = run.finished_at or run.created_at
    how = _SOURCES.get(run.source, run.source) + (", check only" if run.dry_run else "")
    lines = [
        "Roster import result",
        "====================",
        f"Status:   {_status_line(run, report)}",
        f"File:     {_plain(run.filename or 'upload.csv')} ({_n(run.size_bytes)} bytes, {how})",
        f"Received: {_when(run.created_at, zone)}",
        f"Finished: {_when(finished, zone)}",
        f"Reference: {run.id} (quote it when you contact RocketLit support)",
        "",
    ]
    if report.get("skipped_because"):
        lines += [_plain(report["skipped_because"]), ""]
    lines += _summary(report)
    lines += _attention([w for w in report.get("readiness") or [] if isinstance(w, Mapping)])
    if run.status in {"applied", "held", "validated"}:
        lines += _changes(report.get("changes") or {}, names)
    hold = report.get("hold")
    if run.status == "held" and isinstance(hold, Mapping):
        reasons = [r for r in hold.get("reasons") or [] if isinstance(r, Mapping)]
        lines += ["Why it is held:"] + [
            "  - " + _plain(r.get("message") or ", ".join(f"{k} {v}" for k, v in r.items())) for r in reasons
        ]
        lines.append("")
    lines += _next_steps(run, report, names)
    lines += _seats(report.get("seats") or {})
    errors = list(report.get("errors") or [])
    warnings = list(report.get("warnings") or [])
    lines += _problems("Errors", errors, int(report.get("error_count") or len(errors)), names, info)
    lines += _problems("Warnings", warnings, int(report.get("warning_count") or len(warnings)), names, info)
    lines.append("Questions? Contact RocketLit support and quote the reference above.")
    return "\n".join(lines) + "\n"


def render_errors_csv(report: Mapping[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["severity", "line", "column", "code", "message", "hint"])
    for severity, key in (("error", "errors"), ("warning", "warnings")):
        for item in report.get(key) or []:
            row: Iterable[object] = (
                severity,
                item.get("line"),
                item.get("column"),
                item.get("code"),
                item.get("message"),
                item.get("hint"),
            )
            writer.writerow([csv_cell(cell) for cell in row])
    return out.getvalue()


def _write_atomically(path: Path, text: str | Iterable[str]) -> None:
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.writelines([text] if isinstance(text, str) else text)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise


def result_base_name(run: ImportRun) -> str:
    stamp = (run.finished_at or run.created_at).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in (run.filename or "upload.csv"))
    return f"{name.lstrip('._-') or 'upload.csv'}.{stamp}-{run.id[-6:]}"


def write_result(*, settings: Settings, run: ImportRun, engine: sa.Engine | None = None) -> Path | None:
    """Called when an import with source "sftp" or "nightly" ends. Returns the text file's path. With
    `engine` (the import's database): times in the district's time zone, and for a hold or a check
    only, every listed change in `<base>.changes.csv`."""
    if run.source not in {"sftp", "nightly"}:
        return None
    results = district_sftp_dir(settings, run.district_id) / RESULTS_DIR
    results.mkdir(parents=True, exist_ok=True, mode=0o700)
    base = result_base_name(run)
    report: Mapping[str, Any] = run.report or {}
    csv_name = changes_name = None
    if report.get("errors") or report.get("warnings"):
        csv_name = f"{base}.errors.csv"
        _write_atomically(results / csv_name, render_errors_csv(report))
    zone: tzinfo = UTC
    if engine is not None:
        with engine.connect() as conn:
            zone = _zone(_district_zone(conn, run.district_id))
            if run.status in {"held", "validated"}:
                changes_name = f"{base}.changes.csv"
                rows = changes_mod.iter_rows(conn, district_id=run.district_id, import_id=run.id)
                _write_atomically(
                    results / changes_name, changes_mod.csv_lines(rows, changes_mod.unlisted(report))
                )
    text = render_text(run, csv_name, zone=zone, changes_name=changes_name, row_info=row_info(run))
    path = results / f"{base}.txt"
    _write_atomically(path, text)
    log.info(
        "sftp result written",
        extra={
            "fields": {
                "event": "sftp.result",
                "district_id": run.district_id,
                "import_id": run.id,
                "status": run.status,
                "file": path.name,
            }
        },
    )
    return path


def _district_zone(conn: sa.Connection, district_id: str) -> str | None:
    table = District.__table__  # type: ignore[attr-defined]
    zone: str | None = conn.execute(sa.select(table.c.timezone).where(table.c.id == district_id)).scalar()
    return zone


KEY_COLUMNS = (
    ("school_id",),
    ("class_id",),
    ("student_clever_id", "student_email"),
    ("teacher_clever_id", "teacher_email"),
)


def row_info(run: ImportRun) -> dict[int, str]:
    """For the listed errors and warnings of a roster CSV (format v1) still stored: the key values of
    each row they are on (school, class, student, teacher), as `school_id sch-1, class_id 7a, ...`."""
    report: Mapping[str, Any] = run.report or {}
    lines = {
        item["line"]
        for key in ("errors", "warnings")
        for item in (report.get(key) or [])[:FIRST_ERRORS]
        if isinstance(item, Mapping) and isinstance(item.get("line"), int) and not item.get("file")
    }
    lines.discard(1)  # the header
    path = Path(run.upload_path) if run.upload_path else None
    if not lines or path is None or not path.is_file() or report.get("format", "v1") != "v1":
        return {}
    delimiter = {name: char for char, name in DELIMITER_NAMES.items()}.get(str(report.get("delimiter")), ",")
    encoding = "utf-8-sig" if report.get("encoding", "utf-8") == "utf-8" else "cp1252"
    found: dict[int, str] = {}
    with open(path, encoding=encoding, errors="replace", newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        header = [name.strip().lower() for name in next(reader, [])]
        last = max(lines)
        start = reader.line_num + 1
        for record in reader:
            if start in lines:
                found[start] = _keys(dict(zip(header, record, strict=False)))
            if start >= last:
                break
            start = reader.line_num + 1
    return {line: info for line, info in found.items() if info}


def _keys(values: Mapping[str, str]) -> str:
    parts = []
    for choices in KEY_COLUMNS:
        column = next((c for c in choices if (values.get(c) or "").strip()), None)
        if column is not None:
            value = values[column].strip()
            parts.append(f"{column} {value if len(value) <= 40 else value[:39] + '…'}")
    return _plain(", ".join(parts))


def remove_expired(*, settings: Settings, district_id: str, now: float | None = None) -> int:
    """Deletes the district's uploads and results older than ROSTER_UPLOAD_RETENTION_DAYS (the raw roster
    is student data: kept no longer than the API's uploads, docs/security.md C5). Returns how many went."""
    folder = district_sftp_dir(settings, district_id)
    cutoff = (now or time.time()) - settings.upload_retention_days * 86_400
    removed = 0
    for directory in (folder, folder / RESULTS_DIR):
        if not directory.is_dir():
            continue
        for path in directory.iterdir():
            with contextlib.suppress(FileNotFoundError):
                info = path.lstat()
                if stat.S_ISREG(info.st_mode) and info.st_mtime < cutoff:
                    path.unlink()
                    removed += 1
    return removed
