"""The district onboarding guide and its sample file say what the importer does."""

from __future__ import annotations

import re
from pathlib import Path

from roster_api.importing.csv_format import COLUMNS, REQUIRED_COLUMNS
from roster_api.importing.normalize import normalize
from roster_api.importing.parse import parse_bytes

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_docs_sample_roster_imports_without_errors_or_warnings() -> None:
    roster = normalize(parse_bytes((DOCS / "sample-roster.csv").read_bytes()))
    assert roster.errors.as_report()["total"] == 0, roster.errors.as_report()
    assert roster.warnings.as_report()["total"] == 0, roster.warnings.as_report()
    # what the sample shows: two schools, a co-taught class, an email-only student, one without email
    assert len(roster.schools) == 2
    assert any(s.clever_id is None for s in roster.students.values())
    assert any(s.email is None for s in roster.students.values())
    assert len({cls for cls, _ in roster.class_teachers}) < len(roster.class_teachers)


def test_docs_guide_lists_every_column_and_marks_the_required_ones() -> None:
    guide = (DOCS / "district-onboarding.md").read_text(encoding="utf-8")
    for column in COLUMNS:
        assert f"`{column}`" in guide, column
    rows = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^\| `([a-z_]+)`(?:, `[a-z_]+`)? \| ([^|]+) \|", guide, re.M)
    }
    for column in REQUIRED_COLUMNS:
        first = column if column in rows else column.replace("last_name", "first_name")
        assert rows.get(first, "").strip() == "yes", column
