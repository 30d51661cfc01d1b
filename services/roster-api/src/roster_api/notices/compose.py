"""What a notice says: the email (text and HTML) and the webhook's JSON, built from an import outcome or
a nightly sync's outcome. Pure: data in, data out.

A notice carries counts, line numbers, column names and problem codes, never the report's messages or
change samples: those quote names and emails of students, and a notice goes to mailboxes and systems the
roster's privacy rules do not reach."""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from roster_api.importing.outcomes import ImportOutcome

MAX_LISTED_ERRORS = 10
MAX_LISTED_WARNINGS = 5
_NOTIFIED = {"rejected", "held", "superseded", "expired", "failed"}

# Plain words for the problem codes; a code not listed here is shown as it is.
PROBLEMS = {
    "EMPTY_FILE": "the file is empty",
    "BINARY_FILE": "the file is not a CSV text file",
    "NO_ROWS": "the file has a header but no rows",
    "MISSING_COLUMN": "a required column is missing",
    "DUPLICATE_COLUMN": "a column appears twice in the header",
    "MALFORMED_CSV": "the CSV cannot be read (for example a quote that is never closed)",
    "NOT_UTF8": "the file is not UTF-8, so some letters may have changed",
    "UNKNOWN_COLUMN": "a column we do not know; it was ignored",
    "WRONG_FIELD_COUNT": "the row has more or fewer fields than the header",
    "MISSING_VALUE": "a required value is empty",
    "MISSING_PERSON_ID": "the person has neither a Clever ID nor an email",
    "INVALID_CLEVER_ID": "not a Clever ID (24 hexadecimal characters)",
    "INVALID_EMAIL": "not an email address",
    "INVALID_GRADE": "not a grade level",
    "VALUE_TOO_LONG": "a value is too long",
    "SCHOOL_NAME_CONFLICT": "the same school has different names on different rows",
    "CLASS_NAME_CONFLICT": "the same class has different names on different rows",
    "CLASS_SCHOOL_CONFLICT": "the same class is in different schools on different rows",
    "PERSON_CONFLICT": "the same person has a different name, email or grade on another row",
    "EMAIL_CLEVER_ID_CONFLICT": "one email has different Clever IDs on different rows",
    "CLEVER_ID_ROLE_CONFLICT": "one Clever ID is a student on one row and a teacher on another",
    "EMPTY_ROW": "an empty line; skipped",
    "DUPLICATE_ENROLLMENT": "a student is listed twice in the same class",
    "CLEVER_ID_ROLE_CHANGED": "a person's role changed between student and teacher",
    "SEATS_EXCEEDED": "more people than licensed seats",
}

_HEADLINES = {
    "rejected": "roster file rejected",
    "held": "roster import held for your review",
    "superseded": "held import replaced by a newer file",
    "expired": "held import expired",
    "failed": "roster import failed",
    "applied_with_warnings": "roster applied, with warnings",
    "nightly.no_file": "nightly sync found no file",
    "nightly.failed": "nightly sync failed",
}

_NEXT_STEPS = {
    "rejected": "Nothing in the roster changed. Fix the lines listed below in the file (or in the system "
    "that exports it) and upload it again.",
    "held": "Nothing in the roster changed yet. Look at what the import would change, then approve it if "
    "that is right, or discard it and upload a corrected file. A newer file replaces this import.",
    "superseded": "Nothing to do for this import: the district's newest file is its roster, and this "
    "older held import can no longer be approved. Check the newer import instead.",
    "expired": "Nothing in the roster changed: the held import was neither approved nor discarded in "
    "time. Upload the file again if it is still right.",
    "failed": "Nothing in the roster changed. Upload the file again later; if it fails again, contact "
    "support and give them the reference below.",
    "applied_with_warnings": "The roster was updated. Look at the warnings below; fix them in the next "
    "file if they matter to you.",
    "nightly.no_file": "Nothing in the roster changed. Put the file in your SFTP folder before the "
    "nightly time, or change the file name in the district's sync settings.",
    "nightly.failed": "Nothing in the roster changed. The next night tries again; if this repeats, "
    "contact support and give them the reference below.",
}

_SOURCES = {
    "api": "uploaded through the API",
    "sftp": "uploaded by SFTP",
    "nightly": "picked up by the nightly sync",
    "cli": "imported by an operator",
    "console": "uploaded in the console",
}


@dataclass(frozen=True)
class NoticeEvent:
    """One outcome somebody should hear of."""

    district_id: str
    kind: str  # a key of _HEADLINES
    reference: str
    import_id: str | None = None
    status: str | None = None
    source: str | None = None
    dry_run: bool = False
    file_name: str | None = None
    superseded_by: str | None = None
    report: Mapping[str, Any] = field(default_factory=dict)
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class Notice:
    event: NoticeEvent
    subject: str
    text: str
    html: str
    payload: dict[str, Any]


def event_for(outcome: ImportOutcome) -> NoticeEvent | None:
    """The notice an import outcome calls for, or None. Dry runs are answered to whoever asked, except
    an SFTP preview, whose uploader has no screen to read the answer on."""
    if outcome.dry_run and outcome.source != "sftp":
        return None
    kind = outcome.status
    if kind == "applied" and (_count(outcome.report, "warning_count") or _readiness(outcome.report)):
        kind = "applied_with_warnings"
    elif kind not in _NOTIFIED:
        return None
    return NoticeEvent(
        district_id=outcome.district_id,
        kind=kind,
        reference=outcome.import_id,
        import_id=outcome.import_id,
        status=outcome.status,
        source=outcome.source,
        dry_run=outcome.dry_run,
        file_name=outcome.file_name,
        superseded_by=outcome.superseded_by,
        report=outcome.report,
    )


def nightly_event(
    *, district_id: str, run_date: str, outcome: str, file_name: str | None, import_id: str | None = None
) -> NoticeEvent | None:
    """The notice of a nightly sync that found no file or failed; None for other outcomes."""
    if outcome not in {"no_file", "failed"}:
        return None
    return NoticeEvent(
        district_id=district_id,
        kind=f"nightly.{outcome}",
        reference=import_id or f"nightly-{district_id}-{run_date}"[:120],
        import_id=import_id,
        status=outcome,
        source="nightly",
        file_name=file_name,
    )


# --- the parts ----------------------------------------------------------------------------------


def _count(report: Mapping[str, Any], key: str) -> int:
    value = report.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _n(value: int) -> str:
    return f"{value:,}"


def _clip(value: object, limit: int = 60) -> str:
    text = "".join(ch for ch in str(value) if ch.isprintable())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _problems(report: Mapping[str, Any], key: str, limit: int) -> list[dict[str, Any]]:
    items = report.get(key)
    if not isinstance(items, list):
        return []
    listed: list[dict[str, Any]] = []
    for item in items[:limit]:
        if isinstance(item, Mapping):
            line = item.get("line")
            column = item.get("column")
            listed.append(
                {
                    "line": line if isinstance(line, int) else None,
                    "column": _clip(column, 40) if column else None,
                    "code": _clip(item.get("code", ""), 40),
                }
            )
    return listed


def _hold_reasons(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    hold = report.get("hold")
    reasons = hold.get("reasons") if isinstance(hold, Mapping) else None
    if not isinstance(reasons, list):
        return []
    keys = ("entity", "change", "count", "of", "percent", "threshold_percent")
    return [{k: r.get(k) for k in keys} for r in reasons if isinstance(r, Mapping)]


def _readiness(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What stops people from using a product (no license, no Clever link, ...). Its message and hint
    are written to be quoted; its `rows` (names from a non-UTF-8 file) never leave the report."""
    items = report.get("readiness")
    if not isinstance(items, list):
        return []
    keys = ("code", "message", "hint", "count")
    return [{k: item.get(k) for k in keys} for item in items if isinstance(item, Mapping)]


def _int_map(value: object) -> dict[str, int]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, int) and not isinstance(v, bool)}


def _changes(report: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    changes = report.get("changes")
    if not isinstance(changes, Mapping):
        return {}
    # only the counts: the samples name people
    return {str(entity): _int_map(change) for entity, change in changes.items()}


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _when(at: datetime, timezone: str | None) -> str:
    local = at.astimezone(_zone(timezone))
    utc = at.astimezone(UTC)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()} ({utc:%H:%M} UTC)"


def payload(event: NoticeEvent) -> dict[str, Any]:
    """The webhook's JSON body; the email says the same in words."""
    report = event.report
    return {
        "type": f"import.{event.kind}" if not event.kind.startswith("nightly.") else event.kind,
        "reference": event.reference,
        "district_id": event.district_id,
        "import_id": event.import_id,
        "status": event.status,
        "source": event.source,
        "dry_run": event.dry_run,
        "file_name": event.file_name,
        "superseded_by": event.superseded_by,
        "summary": _int_map(report.get("summary")),
        "changes": _changes(report),
        "error_count": _count(report, "error_count"),
        "warning_count": _count(report, "warning_count"),
        "errors": _problems(report, "errors", MAX_LISTED_ERRORS),
        "warnings": _problems(report, "warnings", MAX_LISTED_WARNINGS),
        "hold_reasons": _hold_reasons(report),
        "readiness": _readiness(report),
        "next_step": _NEXT_STEPS[event.kind],
        "occurred_at": event.occurred_at.astimezone(UTC).isoformat(),
    }


# --- the email ----------------------------------------------------------------------------------


def _what_happened(event: NoticeEvent, data: Mapping[str, Any]) -> str:
    name = f'"{_clip(event.file_name)}"' if event.file_name else "The roster file"
    how = _SOURCES.get(event.source or "", "")
    subject = f"{name} ({how})" if how else name
    preview = " This was a preview: nothing would have been applied in any case." if event.dry_run else ""
    match event.kind:
        case "rejected":
            said = f"{subject} was not applied: it has {_n(data['error_count'])} errors."
        case "held":
            said = f"{subject} was checked but not applied: it would change more of the roster than "
            said += "the district allows without a review."
        case "superseded":
            said = f"{subject} was held for review, and a newer import ({data['superseded_by']}) "
            said += "replaced it."
        case "expired":
            said = f"{subject} was held for review and expired without a decision."
        case "failed":
            said = f"{subject} could not be imported because of a problem on our side."
        case "applied_with_warnings":
            said = f"{subject} was applied, with " + _attention(data) + "."
        case "nightly.no_file":
            said = f"The nightly sync found no file {name} in the district's SFTP folder."
        case _:
            said = "The nightly sync could not run."
    return said + preview


def _attention(data: Mapping[str, Any]) -> str:
    parts = []
    if data["warning_count"]:
        parts.append(f"{_n(data['warning_count'])} warnings")
    if data["readiness"]:
        parts.append(f"{len(data['readiness'])} things that need your attention")
    return " and ".join(parts) or "warnings"


def _readiness_line(item: Mapping[str, Any]) -> str:
    line = _clip(item.get("message") or item.get("code") or "", 400)
    hint = _clip(item.get("hint") or "", 400)
    return f"{line} {hint}".strip()


def _reason_line(reason: Mapping[str, Any]) -> str:
    return (
        f"{_n(int(reason.get('count') or 0))} of {_n(int(reason.get('of') or 0))} {reason.get('entity')} "
        f"({reason.get('percent')} %) would be {reason.get('change')}; the limit is "
        f"{reason.get('threshold_percent')} %."
    )


def _problem_line(item: Mapping[str, Any]) -> str:
    where = f"line {_n(item['line'])}" if item.get("line") else "the whole file"
    if item.get("column"):
        where += f", column {item['column']}"
    code = str(item.get("code"))
    return f"{where}: {PROBLEMS.get(code, code)} ({code})"


def _count_lines(data: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    summary = data["summary"]
    if summary:
        lines.append("In the file: " + "; ".join(f"{_n(v)} {k}" for k, v in summary.items()) + ".")
    for entity, change in data["changes"].items():
        moved = {k: v for k, v in change.items() if k != "unchanged" and v}
        if moved:
            lines.append(f"{entity}: " + ", ".join(f"{_n(v)} {k}" for k, v in moved.items()) + ".")
    return lines


def _sections(event: NoticeEvent, data: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    """(heading, lines) in the order the email shows them; empty sections are left out."""
    errors = data["errors"]
    warnings = data["warnings"]
    sections = [
        ("What happened", [_what_happened(event, data)]),
        ("Why it was held", [_reason_line(r) for r in data["hold_reasons"]] if event.kind == "held" else []),
        ("Needs your attention", [_readiness_line(r) for r in data["readiness"]]),
        ("Counts", _count_lines(data)),
        (
            f"Errors ({_n(data['error_count'])}, the first {len(errors)} listed)",
            [_problem_line(e) for e in errors],
        ),
        (
            f"Warnings ({_n(data['warning_count'])}, the first {len(warnings)} listed)",
            [_problem_line(w) for w in warnings],
        ),
        ("What to do next", [data["next_step"]]),
    ]
    return [(heading, lines) for heading, lines in sections if lines]


def compose(event: NoticeEvent, *, district_name: str, timezone: str | None) -> Notice:
    data = payload(event)
    headline = _HEADLINES[event.kind]
    subject = f"{_clip(district_name, 80)}: {headline} (reference {event.reference})"
    sections = _sections(event, data)
    footer = [f"Reference: {event.reference}", f"Time: {_when(event.occurred_at, timezone)}"]
    text = [f"{_clip(district_name, 80)}: {headline}", ""]
    for heading, lines in sections:
        text += [heading, *(f"  {line}" for line in lines), ""]
    text += footer
    esc = html.escape
    body = [f"<h2>{esc(_clip(district_name, 80))}: {esc(headline)}</h2>"]
    for heading, lines in sections:
        body.append(f"<h3>{esc(heading)}</h3>")
        body.append("<ul>" + "".join(f"<li>{esc(line)}</li>" for line in lines) + "</ul>")
    body.append("<p>" + "<br>".join(esc(line) for line in footer) + "</p>")
    page = '<!doctype html><html><body style="font-family: sans-serif">' + "".join(body) + "</body></html>"
    return Notice(event=event, subject=subject, text="\n".join(text) + "\n", html=page, payload=data)
