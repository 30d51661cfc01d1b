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
    SUPERSEDED = "superseded"  # held, then a newer import of the district was applied or held
    EXPIRED = "expired"  # held, and not decided within the district's hold_expire_days


FINAL = frozenset(
    {
        ImportStatus.VALIDATED,
        ImportStatus.APPLIED,
        ImportStatus.SKIPPED,
        ImportStatus.REJECTED,
        ImportStatus.DISCARDED,
        ImportStatus.FAILED,
        ImportStatus.SUPERSEDED,
        ImportStatus.EXPIRED,
    }
)


class Phase(StrEnum):
    READING = "reading"  # the file is read and each row checked
    CHECKING = "checking"  # the district is locked and its current roster loaded
    COMPARING = "comparing"  # the file is compared with the roster
    WRITING = "writing"  # the changes are written


class Progress(BaseModel):
    phase: Phase
    rows_read: int
    bytes_read: int
    total_bytes: int
    percent: float = Field(description="0-100, an estimate that only grows")


class ImportSummary(BaseModel):
    id: str
    district_id: str
    status: ImportStatus
    source: str = Field(description='"api", "sftp", "nightly", "cli" or "console"')
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
    superseded_by: str | None = Field(default=None, description="The newer import that replaced this hold")
    progress: Progress | None = Field(default=None, description="While running: how far it got")
    summary: dict[str, int] = Field(default_factory=dict, description="rows, schools, teachers, ...")


class ImportPublic(ImportSummary):
    report: dict[str, Any] = Field(
        default_factory=dict,
        description="summary, changes per entity, seats, hold, errors, warnings, encoding, delimiter, "
        "sha256, timings (README: Importing a roster)",
    )
