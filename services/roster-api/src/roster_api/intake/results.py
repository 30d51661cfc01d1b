"""The answer to an SFTP upload, written into the district's own SFTP folder (`results/`), so the
district reads it with the same client it uploaded with."""

from __future__ import annotations

from pathlib import Path

from roster_api.models import ImportRun
from roster_api.settings import Settings


def district_sftp_dir(settings: Settings, district_id: str) -> Path:
    return settings.data_dir / "sftp" / district_id


def write_result(*, settings: Settings, run: ImportRun) -> Path | None:
    """Called by the import worker when an import with source "sftp" or "nightly" ends."""
    if run.source not in {"sftp", "nightly"}:
        return None
    results = district_sftp_dir(settings, run.district_id) / "results"
    results.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = (run.finished_at or run.created_at).strftime("%Y%m%dT%H%M%SZ")
    path = results / f"{run.filename or 'upload.csv'}.{stamp}.txt"
    path.write_text(f"status: {run.status}\nimport: {run.id}\nerrors: {run.error_count}\n", encoding="utf-8")
    path.chmod(0o600)
    return path
