"""The answer to an SFTP upload or a nightly sync, written into the district's own SFTP folder
(`results/`), so the district reads it with the same client it uploaded with:

    results/roster.csv.20261129T020005Z-3f9a1c.txt          status, counts, changes, seats, first errors
    results/roster.csv.20261129T020005Z-3f9a1c.errors.csv   every listed error and warning (when any)

Both are written under a hidden temporary name and renamed, so a client never reads half a file. The CSV
is escaped against formula injection (security.md C3); the text file holds no control characters."""

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
from datetime import UTC
from pathlib import Path
from typing import Any

from roster_api.models import ImportRun
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


def district_sftp_dir(settings: Settings, district_id: str) -> Path:
    return settings.data_dir / "sftp" / district_id


def csv_cell(value: object) -> str:
    """A cell a spreadsheet shows as text, never evaluates (`=1+2` -> `'=1+2`); quoting is csv's job."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def _plain(value: object) -> str:
    """One line of printable text: values quoted from a CSV may hold anything."""
    return "".join(ch if ch.isprintable() else " " for ch in str(value))


def _status_line(run: ImportRun, report: Mapping[str, Any]) -> str:
    errors = run.error_count or int(report.get("error_count") or 0)
    return {
        "applied": "APPLIED: your roster was updated with this file.",
        "skipped": "SKIPPED: this file is identical to the last one applied, so nothing needed to change.",
        "rejected": f"REJECTED: nothing was changed. The file has {errors} error(s); fix them and upload "
        "the file again.",
        "held": "HELD: nothing was changed yet. This file would change a large part of your roster, so it "
        "waits for a RocketLit support person to approve it (see the reasons below). Contact support if "
        "the change is expected.",
        "validated": "CHECKED: the file is valid (dry run); nothing was changed.",
        "discarded": "DISCARDED: support discarded this import; nothing was changed.",
        "failed": "FAILED: nothing was changed. "
        + (run.failure or "An internal error stopped the import; contact support with the import id."),
        "queued": "QUEUED: the import has not run yet.",
        "running": "RUNNING: the import has not finished yet.",
    }.get(run.status, f"{run.status.upper()}")


def _problem_line(item: Mapping[str, Any]) -> str:
    where = []
    if item.get("line") is not None:
        where.append(f"line {item['line']}")
    if item.get("column"):
        where.append(f"column {item['column']}")
    text = f"{', '.join(where) or 'whole file'}: {item.get('message') or item.get('code') or ''}"
    if item.get("hint"):
        text += f" (hint: {item['hint']})"
    return "  - " + _plain(text)


def _problems(title: str, items: list[Mapping[str, Any]], total: int, csv_name: str | None) -> list[str]:
    if not total and not items:
        return []
    shown = items[:FIRST_ERRORS]
    lines = [f"{title}: {total}" + (f" (the first {len(shown)} below)" if total > len(shown) else "")]
    lines += [_problem_line(item) for item in shown]
    if csv_name:
        lines.append(f"  All listed {title.lower()} are in results/{csv_name}")
    return [*lines, ""]


def _changes(changes: Mapping[str, Any]) -> list[str]:
    rows = [(ENTITY_LABELS.get(name, name), c) for name, c in changes.items() if isinstance(c, Mapping)]
    if not rows:
        return []
    kinds = ("created", "updated", "deactivated", "reactivated", "unchanged")
    width = max(len(label) for label, _ in rows) + 2
    lines = ["Changes:", " " * (width + 2) + "".join(f"{k:>13}" for k in kinds)]
    for label, change in rows:
        lines.append(f"  {label:<{width}}" + "".join(f"{int(change.get(k) or 0):>13}" for k in kinds))
    return [*lines, ""]


def _seats(seats: Mapping[str, Any]) -> list[str]:
    lines = []
    for product, info in sorted(seats.items()):
        if not isinstance(info, Mapping):
            continue
        enforced = "enforced" if info.get("enforced") else "not enforced"
        name = PRODUCT_LABELS.get(product, product)
        lines.append(f"  {name}: {info.get('used')} students of {info.get('licensed')} seats ({enforced})")
    return ["Seats:", *lines, ""] if lines else []


def render_text(run: ImportRun, csv_name: str | None) -> str:
    report: Mapping[str, Any] = run.report or {}
    finished = run.finished_at or run.created_at
    lines = [
        "Roster import result",
        "====================",
        f"Status:   {_status_line(run, report)}",
        f"File:     {_plain(run.filename or 'upload.csv')} ({run.size_bytes} bytes)",
        f"SHA-256:  {run.sha256 or '-'}",
        f"Import:   {run.id} ({run.source}{', dry run' if run.dry_run else ''})",
        f"Received: {run.created_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC",
        f"Finished: {finished.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC",
        "",
    ]
    if report.get("skipped_because"):
        lines += [_plain(report["skipped_because"]), ""]
    summary = report.get("summary")
    if isinstance(summary, Mapping) and summary:
        counts = ", ".join(f"{k} {v}" for k, v in summary.items() if k != "rows")
        lines += [f"Rows read: {summary.get('rows', '?')} ({counts})"]
        if report.get("encoding") or report.get("delimiter"):
            lines.append(f"Format:   {report.get('encoding', '?')}, {report.get('delimiter', '?')}-separated")
        lines.append("")
    if run.status in {"applied", "held", "validated"}:
        lines += _changes(report.get("changes") or {})
    hold = report.get("hold")
    if run.status == "held" and isinstance(hold, Mapping):
        reasons = [r for r in hold.get("reasons") or [] if isinstance(r, Mapping)]
        lines += ["Why it is held:"] + [
            "  - " + _plain(r.get("message") or ", ".join(f"{k} {v}" for k, v in r.items())) for r in reasons
        ]
        lines.append("")
    lines += _seats(report.get("seats") or {})
    errors = list(report.get("errors") or [])
    warnings = list(report.get("warnings") or [])
    lines += _problems("Errors", errors, int(report.get("error_count") or len(errors)), csv_name)
    lines += _problems("Warnings", warnings, int(report.get("warning_count") or len(warnings)), csv_name)
    lines.append("Questions? Contact RocketLit support and quote the import id above.")
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


def _write_atomically(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise


def result_base_name(run: ImportRun) -> str:
    stamp = (run.finished_at or run.created_at).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in (run.filename or "upload.csv"))
    return f"{name.lstrip('._-') or 'upload.csv'}.{stamp}-{run.id[-6:]}"


def write_result(*, settings: Settings, run: ImportRun) -> Path | None:
    """Called by the import worker when an import with source "sftp" or "nightly" ends. Returns the
    text file's path."""
    if run.source not in {"sftp", "nightly"}:
        return None
    results = district_sftp_dir(settings, run.district_id) / RESULTS_DIR
    results.mkdir(parents=True, exist_ok=True, mode=0o700)
    base = result_base_name(run)
    report: Mapping[str, Any] = run.report or {}
    csv_name = None
    if report.get("errors") or report.get("warnings"):
        csv_name = f"{base}.errors.csv"
        _write_atomically(results / csv_name, render_errors_csv(report))
    path = results / f"{base}.txt"
    _write_atomically(path, render_text(run, csv_name))
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


def remove_expired(*, settings: Settings, district_id: str, now: float | None = None) -> int:
    """Deletes the district's uploads and results older than ROSTER_UPLOAD_RETENTION_DAYS (the raw roster
    is student data: kept no longer than the API's uploads, security.md C5). Returns how many went."""
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
