"""Golden reports for small realistic files, through parse -> normalize -> diff against an empty
district. Regenerate with UPDATE_GOLDEN=1 after a deliberate change, and review the diff."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import pytest

from roster_api.importing.diff import Current, LicenseRow, Policy, diff
from roster_api.importing.normalize import normalize
from roster_api.importing.parse import parse_bytes

DATA = Path(__file__).parent / "data"
FILES = ["excel_bom_crlf.csv", "email_only.csv", "quoted_commas_newlines.csv"]


def pipeline_report(data: bytes) -> dict[str, Any]:
    roster = normalize(parse_bytes(data))
    people = (f"p_{n:04d}" for n in itertools.count(1))
    accounts = (f"acct_{n:04d}" for n in itertools.count(1))
    policy = Policy(licenses={"rocketlit": LicenseRow(seats=4, enforce_seats=False)})
    result = diff(
        roster, Current(), policy, person_id=lambda: next(people), account_id=lambda: next(accounts)
    )
    errors = [p.as_dict() for p in roster.errors.sorted()] + [p.as_dict() for p in result.errors.sorted()]
    warnings = [p.as_dict() for p in roster.warnings.sorted()] + [
        p.as_dict() for p in result.warnings.sorted()
    ]
    return {
        **roster.file_info(),
        "summary": roster.summary(),
        "changes": result.changes_report() if not errors else {},
        "seats": result.seats,
        "held": result.held,
        "errors": errors,
        "warnings": warnings,
        "students": {
            k: [p.first_name, p.last_name, p.email, p.grade] for k, p in sorted(roster.students.items())
        },
    }


@pytest.mark.parametrize("name", FILES)
def test_golden_report(name: str) -> None:
    report = pipeline_report((DATA / name).read_bytes())
    golden = DATA / (name.removesuffix(".csv") + ".report.json")
    text = json.dumps(report, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text, encoding="utf-8")
    assert json.loads(text) == json.loads(golden.read_text(encoding="utf-8"))
