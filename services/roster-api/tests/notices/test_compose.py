"""What a notice says, without a database: which outcomes call for one, and that the email and the
webhook body carry counts, lines, columns and codes but never a student's name or email."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from roster_api.importing.outcomes import ImportOutcome
from roster_api.notices import smtp, webhook
from roster_api.notices.compose import compose, event_for, nightly_event

# What a report of a rejected import holds: messages and samples quote the file, names and emails too.
REPORT: dict[str, Any] = {
    "summary": {"rows": 12345, "schools": 3, "teachers": 40, "classes": 120, "students": 1234},
    "changes": {
        "students": {
            "created": 1200,
            "updated": 3,
            "deactivated": 0,
            "reactivated": 0,
            "unchanged": 31,
            "samples": [{"name": "Nguyễn Văn An", "email": "an.nguyen@students.example.org"}],
        }
    },
    "error_count": 2,
    "warning_count": 1,
    "errors": [
        {
            "line": 1207,
            "column": "student_email",
            "code": "INVALID_EMAIL",
            "message": "'an.nguyen@@students.example.org' is not an email address.",
        },
        {
            "line": 3,
            "column": "student_first_name",
            "code": "PERSON_CONFLICT",
            "message": "The student Nguyễn Văn An has first name 'An' on line 3 but 'Anh' on line 9.",
        },
    ],
    "warnings": [{"line": None, "column": None, "code": "SEATS_EXCEEDED", "message": "Kid Doe ..."}],
    "hold": {"held": False, "approved": False, "reasons": []},
}
PII = ("Nguyễn", "Văn", "an.nguyen", "students.example.org", "Anh", "Kid Doe")


def outcome(status: str, **over: Any) -> ImportOutcome:
    values: dict[str, Any] = {
        "import_id": "imp_0123456789abcdef",
        "district_id": "d1",
        "status": status,
        "source": "sftp",
        "dry_run": False,
        "file_name": "roster.csv",
        "report": REPORT,
    }
    return ImportOutcome(**(values | over))


@pytest.mark.parametrize(
    ("status", "over", "kind"),
    [
        ("rejected", {}, "rejected"),
        ("held", {}, "held"),
        ("superseded", {"superseded_by": "imp_newer"}, "superseded"),
        ("expired", {}, "expired"),
        ("failed", {}, "failed"),
        ("applied", {}, "applied_with_warnings"),
        ("applied", {"report": {"warning_count": 0}}, None),
        (
            "applied",
            {"report": {"warning_count": 0, "readiness": [{"code": "NO_LICENSE"}]}},
            "applied_with_warnings",
        ),
        ("validated", {"dry_run": True}, None),
        ("skipped", {}, None),
        ("discarded", {}, None),
        ("queued", {}, None),
        # a dry run answers whoever asked; an SFTP preview's uploader has no screen
        ("rejected", {"dry_run": True, "source": "api"}, None),
        ("rejected", {"dry_run": True, "source": "sftp"}, "rejected"),
    ],
)
def test_which_outcomes_call_for_a_notice(status: str, over: dict[str, Any], kind: str | None) -> None:
    event = event_for(outcome(status, **over))
    assert (event.kind if event else None) == kind


def test_nightly_notices_only_for_no_file_and_failed() -> None:
    for name in ("queued", "skipped", "pending", "already_done"):
        assert nightly_event(district_id="d1", run_date="2026-11-30", outcome=name, file_name="r.csv") is None
    event = nightly_event(district_id="d1", run_date="2026-11-30", outcome="no_file", file_name="roster.csv")
    assert event is not None
    assert event.kind == "nightly.no_file"
    assert event.reference == "nightly-d1-2026-11-30"


def test_the_email_says_what_happened_without_names_or_emails() -> None:
    event = event_for(outcome("rejected"))
    assert event is not None
    at = datetime(2026, 11, 30, 22, 5, tzinfo=UTC)
    notice = compose(
        event.__class__(**{**event.__dict__, "occurred_at": at}),
        district_name="Springfield <USD>",
        timezone="America/Chicago",
    )
    for text in (notice.subject, notice.text, notice.html, json.dumps(notice.payload, ensure_ascii=False)):
        for secret in PII:
            assert secret not in text
    assert "reference imp_0123456789abcdef" in notice.subject
    assert "Reference: imp_0123456789abcdef" in notice.text
    assert '"roster.csv" (uploaded by SFTP) was not applied: it has 2 errors.' in notice.text
    assert "line 1,207, column student_email: not an email address (INVALID_EMAIL)" in notice.text
    assert "the whole file: more people than licensed seats (SEATS_EXCEEDED)" in notice.text
    assert "12,345 rows" in notice.text
    assert "students: 1,200 created, 3 updated." in notice.text
    assert "2026-11-30 16:05 CST (22:05 UTC)" in notice.text
    assert "Fix the lines listed below" in notice.text
    assert "Springfield &lt;USD&gt;" in notice.html
    assert "<USD>" not in notice.html
    assert notice.payload["errors"][0] == {"line": 1207, "column": "student_email", "code": "INVALID_EMAIL"}
    assert notice.payload["changes"]["students"] == {
        "created": 1200,
        "updated": 3,
        "deactivated": 0,
        "reactivated": 0,
        "unchanged": 31,
    }


def test_a_held_import_says_why_in_numbers() -> None:
    report = {
        "hold": {
            "held": True,
            "reasons": [
                {
                    "message": "50 of 100 students ... (a notice words it from the numbers)",
                    "entity": "students",
                    "change": "deactivated",
                    "count": 50,
                    "of": 100,
                    "percent": 50.0,
                    "threshold_percent": 10.0,
                }
            ],
        }
    }
    event = event_for(outcome("held", report=report))
    assert event is not None
    notice = compose(event, district_name="D1", timezone="UTC")
    assert "50 of 100 students (50.0 %) would be deactivated; the limit is 10.0 %." in notice.text
    assert "approve it" in notice.text
    assert notice.payload["hold_reasons"][0]["count"] == 50
    assert "message" not in notice.payload["hold_reasons"][0]


def test_webhook_signature_is_hmac_sha256_of_timestamp_and_body() -> None:
    content = webhook.body({"b": 1, "a": "é"})
    expected = hmac.new(b"whsec_x", b"1700000000." + content, hashlib.sha256).hexdigest()
    assert webhook.signature("whsec_x", 1700000000, content) == "sha256=" + expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.org", ("mail.example.org", 25, False, False, None, None)),
        ("smtp://mail.example.org:587?starttls=1", ("mail.example.org", 587, False, True, None, None)),
        ("smtps://u%40x:p%3Ass@mail.example.org", ("mail.example.org", 465, True, False, "u@x", "p:ss")),
    ],
)
def test_smtp_url(url: str, expected: tuple[object, ...]) -> None:
    server = smtp.parse_url(url)
    got = (
        server.host,
        server.port,
        server.implicit_tls,
        server.require_starttls,
        server.username,
        server.password,
    )
    assert got == expected


@pytest.mark.parametrize("url", ["http://mail.example.org", "smtp://", "smtp://h:99999", "mail.example.org"])
def test_bad_smtp_url_is_refused_without_echoing_it(url: str) -> None:
    with pytest.raises(ValueError, match="ROSTER_SMTP_URL") as info:
        smtp.parse_url(url)
    assert url not in str(info.value) or not url


def test_readiness_is_told_in_its_own_words_but_never_its_rows() -> None:
    report = {
        "warning_count": 0,
        "readiness": [
            {
                "code": "NO_LICENSE",
                "message": "No product is licensed for this district, so nobody gets an account.",
                "hint": "Ask support to add a license.",
                "count": 1,
                "rows": [],
            },
            {
                "code": "NOT_UTF8",
                "message": "The file was read as Windows-1252; 1 name changed because of it.",
                "hint": "Save the file as UTF-8.",
                "count": 1,
                "rows": [{"line": 4, "field": "last_name", "old": "Nguy?n", "new": "Nguyễn"}],
            },
        ],
    }
    event = event_for(outcome("applied", report=report))
    assert event is not None
    notice = compose(event, district_name="D1", timezone="UTC")
    assert "was applied, with 2 things that need your attention." in notice.text
    assert "nobody gets an account. Ask support to add a license." in notice.text
    assert "Nguy" not in notice.text + notice.html + json.dumps(notice.payload, ensure_ascii=False)
    assert [r["code"] for r in notice.payload["readiness"]] == ["NO_LICENSE", "NOT_UTF8"]
    assert "rows" not in notice.payload["readiness"][1]
