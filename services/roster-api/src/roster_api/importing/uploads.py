"""The upload store: a roster file written to `data_dir/uploads/<district>/<import_id>.csv` as it arrives,
its import queued, and files of finished imports deleted after the retention period. The HTTP route, the
SFTP intake, the nightly job and the CLI all end here."""

from __future__ import annotations

import hashlib
import os
import secrets
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlmodel import Session, col, select

from roster_api import audit
from roster_api.db import session_scope
from roster_api.errors import PayloadTooLarge, district_not_found
from roster_api.importing import changes, queue
from roster_api.importing.schemas import FINAL, ImportStatus
from roster_api.models import District, ImportRun, utcnow
from roster_api.settings import Settings

COPY_CHUNK = 1 << 20


def new_import_id() -> str:
    return "imp_" + secrets.token_hex(12)


def upload_dir(settings: Settings, district_id: str) -> Path:
    return settings.data_dir / "uploads" / district_id


class UploadSink:
    """Writes an upload to `data_dir/uploads/<district>/<import_id>.csv` (0600) as it arrives, hashing
    and counting on the way; over `limit` bytes it stops with 413 and leaves nothing behind."""

    def __init__(self, *, settings: Settings, district_id: str, import_id: str, limit: int) -> None:
        directory = upload_dir(settings, district_id)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = directory / f"{import_id}.csv"
        self.partial = directory / f".{import_id}.part"
        self.limit = limit
        self.size = 0
        self.digest = hashlib.sha256()
        fd = os.open(self.partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.file = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            self.abort()
            raise too_large(self.limit)
        self.digest.update(data)
        self.file.write(data)

    def finish(self) -> tuple[Path, str, int]:
        self.file.close()
        os.replace(self.partial, self.path)
        return self.path, self.digest.hexdigest(), self.size

    def abort(self) -> None:
        if not self.file.closed:
            self.file.close()
        self.partial.unlink(missing_ok=True)


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The upload is larger than the limit of {limit} bytes (ROSTER_MAX_UPLOAD_BYTES).",
    )


def create_run(
    *,
    session: Session,
    import_id: str,
    district_id: str,
    source: str,
    path: Path,
    sha256: str,
    size: int,
    filename: str | None,
    created_by: str,
    dry_run: bool,
) -> ImportRun:
    run = ImportRun(
        id=import_id,
        district_id=district_id,
        status=ImportStatus.QUEUED.value,
        source=source,
        dry_run=dry_run,
        filename=(filename or None) and Path(filename).name[:255],
        sha256=sha256,
        size_bytes=size,
        upload_path=str(path),
        created_by=created_by[:100],
    )
    session.add(run)
    queue.wake_after_commit(session)
    audit.record(
        session=session,
        actor=created_by,
        action="import.upload",
        district_id=district_id,
        target=import_id,
        details={"source": source, "dry_run": dry_run, "size_bytes": size, "sha256": sha256},
    )
    session.flush()
    return run


class Enqueue(Protocol):
    """The signature of `enqueue_file`, for entry points that take another (tests)."""

    def __call__(
        self,
        *,
        engine: sa.Engine,
        settings: Settings,
        district_id: str,
        source: str,
        src_path: Path,
        filename: str,
        created_by: str,
        dry_run: bool = False,
    ) -> Any: ...


def enqueue_file(
    *,
    engine: sa.Engine,
    settings: Settings,
    district_id: str,
    source: str,
    src_path: Path,
    filename: str,
    created_by: str,
    dry_run: bool = False,
) -> ImportRun:
    """Copies `src_path` into the upload store and queues an import (committed). For the SFTP intake,
    the nightly job and the CLI; the worker picks it up."""
    with session_scope(engine) as session:
        if session.get(District, district_id) is None:
            raise district_not_found(district_id)
    import_id = new_import_id()
    sink = UploadSink(settings=settings, district_id=district_id, import_id=import_id, limit=1 << 62)
    try:
        with open(src_path, "rb") as src:
            while chunk := src.read(COPY_CHUNK):
                sink.write(chunk)
        path, sha256, size = sink.finish()
    except BaseException:
        sink.abort()
        raise
    try:
        with session_scope(engine) as session:
            return create_run(
                session=session,
                import_id=import_id,
                district_id=district_id,
                source=source,
                path=path,
                sha256=sha256,
                size=size,
                filename=filename,
                created_by=created_by,
                dry_run=dry_run,
            )
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def delete_expired_uploads(*, engine: sa.Engine, settings: Settings, now: datetime | None = None) -> int:
    """Deletes stored uploads of finished imports older than ROSTER_UPLOAD_RETENTION_DAYS, and partial
    uploads left by interrupted requests. Queued and held imports keep their files."""
    now = now or utcnow()
    cutoff = now - timedelta(days=settings.upload_retention_days)
    final = [s.value for s in FINAL]
    deleted = 0
    with session_scope(engine) as session:
        runs = session.exec(
            select(ImportRun).where(
                col(ImportRun.upload_path).is_not(None),
                col(ImportRun.status).in_(final),
                ImportRun.created_at < cutoff,
            )
        ).all()
        for run in runs:
            if run.upload_path:
                path = Path(run.upload_path)
                if path.exists():
                    path.unlink()
                    deleted += 1
            run.upload_path = None
            session.add(run)
        changes.delete_expired(session.connection(), before=cutoff, statuses=final)
    root = settings.data_dir / "uploads"
    if root.is_dir():
        stale = now.timestamp() - 86_400
        for partial in root.glob("*/.*.part"):
            try:
                if partial.stat().st_mtime < stale:
                    partial.unlink()
            except FileNotFoundError:
                continue
    return deleted
