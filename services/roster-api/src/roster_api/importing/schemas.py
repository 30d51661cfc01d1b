from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class ImportStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    VALIDATED = "validated"
    APPLIED = "applied"
    SKIPPED = "skipped"
    REJECTED = "rejected"
    HELD = "held"
    DISCARDED = "discarded"
    FAILED = "failed"


FINAL = frozenset(
    {
        ImportStatus.VALIDATED,
        ImportStatus.APPLIED,
        ImportStatus.SKIPPED,
        ImportStatus.REJECTED,
        ImportStatus.DISCARDED,
        ImportStatus.FAILED,
    }
)


class ImportSummary(BaseModel):
    id: str
    district_id: str
    status: ImportStatus
    source: str = Field(description='"api", "sftp" or "nightly"')
    dry_run: bool
    filename: str | None
    sha256: str | None
    size_bytes: int
    error_count: int
    warning_count: int
    attempts: int
    failure: str | None
    created_by: str | None
    decided_by: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    summary: dict[str, int] = Field(default_factory=dict, description="rows, schools, teachers, ...")


class ImportPublic(ImportSummary):
    report: dict[str, Any] = Field(
        default_factory=dict,
        description="summary, changes per entity, seats, hold, errors, warnings, encoding, delimiter, "
        "sha256, timings (README: Importing a roster)",
    )
