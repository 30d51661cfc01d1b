"""District purge (docs/security.md K2): every row of the district in every table, its files under data_dir,
its credentials and login attempts, then a disposition record (counts, time, who).

Tables are found by walking the metadata, so a table added later with a `district_id` column is purged
without anyone remembering to add it here. Per-district files live under `<data_dir>/<area>/<district_id>/`
(sftp, uploads, ...) or are named by `import_run.upload_path`; both are removed."""

from __future__ import annotations

import logging
import secrets
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlmodel import Session, SQLModel, col, func, select

from roster_api import audit
from roster_api.errors import Conflict
from roster_api.models import Disposal, District, ImportRun, LoginAttempt
from roster_shared.errors import ErrorCode

_log = logging.getLogger("roster_api.purge")

# The disposition record outlives the district: it is the proof of deletion.
KEPT_TABLES = frozenset({Disposal.__tablename__})


def _district_tables() -> list[sa.Table]:
    """Children before parents (reverse dependency order), so foreign keys never block a delete."""
    return [
        table
        for table in reversed(SQLModel.metadata.sorted_tables)
        if "district_id" in table.c and table.name not in KEPT_TABLES
    ]


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def _remove_files(*, data_dir: Path, district_id: str, upload_paths: list[str]) -> dict[str, int]:
    files = 0
    size = 0
    if not data_dir.exists():
        return {"files": 0, "bytes": 0}
    targets: list[Path] = []
    for raw in upload_paths:
        path = Path(raw)
        if not path.is_absolute():
            path = data_dir / path
        # never follow a stored path out of data_dir
        if _inside(path, data_dir) and (path.is_file() or path.is_symlink()):
            targets.append(path)
    for area in sorted(data_dir.iterdir()):
        if area.is_dir() and not area.is_symlink():
            candidate = area / district_id
            if candidate.exists() or candidate.is_symlink():
                targets.append(candidate)
    for target in targets:
        if target.is_symlink() or target.is_file():
            if not target.is_symlink():
                size += target.stat().st_size
            target.unlink(missing_ok=True)
            files += 1
        elif target.is_dir():
            for item in target.rglob("*"):
                if item.is_file() and not item.is_symlink():
                    files += 1
                    size += item.stat().st_size
                elif item.is_symlink():
                    files += 1
            shutil.rmtree(target)
    return {"files": files, "bytes": size}


def purge_district(*, session: Session, district: District, data_dir: Path, actor: str) -> Disposal:
    """Deletes in the caller's transaction; files go last, after every delete succeeded, so a database
    error leaves both rows and files in place. The caller commits."""
    district_id = district.id
    if session.get_bind().dialect.name == "postgresql":
        # the import's per-district lock (importing/apply.py): an import applying now would write rows
        # of this district after the purge committed
        got = session.execute(
            sa.text("SELECT pg_try_advisory_xact_lock(hashtext('roster-import'), hashtext(:d))"),
            {"d": district_id},
        ).scalar()
        if not got:
            raise Conflict(
                f"An import of {district_id!r} is being applied; purge again when it has finished.",
                code=ErrorCode.CONFLICT,
            )
    upload_paths = [
        p
        for p in session.exec(
            select(ImportRun.upload_path).where(
                ImportRun.district_id == district_id, col(ImportRun.upload_path).is_not(None)
            )
        ).all()
        if p
    ]
    counts: dict[str, Any] = {}
    if district.clever_district_id:
        # attempts from before the district was linked carry only the Clever district id
        result = session.execute(
            sa.delete(LoginAttempt).where(
                col(LoginAttempt.clever_district_id) == district.clever_district_id,
                col(LoginAttempt.district_id).is_(None),
            )
        )
        counts["login_attempt_unlinked"] = int(getattr(result, "rowcount", 0) or 0)
    session.expunge_all()
    for table in _district_tables():
        result = session.execute(sa.delete(table).where(table.c.district_id == district_id))
        counts[table.name] = int(getattr(result, "rowcount", 0) or 0)
    result = session.execute(sa.delete(District.__table__).where(District.__table__.c.id == district_id))  # type: ignore[attr-defined]
    counts["district"] = int(getattr(result, "rowcount", 0) or 0)
    session.flush()
    counts.update(_remove_files(data_dir=data_dir, district_id=district_id, upload_paths=upload_paths))
    counts = {k: v for k, v in counts.items() if v}
    disposal = Disposal(id="dsp_" + secrets.token_hex(8), district_id=district_id, actor=actor, counts=counts)
    session.add(disposal)
    # district_id stays empty on purpose: after the purge no row but the disposal names the district
    audit.record(
        session=session,
        actor=actor,
        action="district.purge",
        target=district_id,
        details={"disposal_id": disposal.id, "counts": counts},
    )
    session.flush()
    _log.info("district purged", extra={"fields": {"district_id": district_id, "disposal_id": disposal.id}})
    return disposal


class DisposalPublic(BaseModel):
    """The written disposition record: which district, when, who, and how many rows and files went."""

    id: str
    district_id: str
    created_at: datetime
    actor: str
    counts: dict[str, int]


def list_disposals(
    *, session: Session, only: str | None, limit: int, offset: int
) -> tuple[list[DisposalPublic], int]:
    conditions = [] if only is None else [Disposal.district_id == only]
    total = session.exec(select(func.count()).select_from(Disposal).where(*conditions)).one()
    rows = session.exec(
        select(Disposal)
        .where(*conditions)
        .order_by(col(Disposal.created_at).desc(), col(Disposal.id))
        .limit(limit)
        .offset(offset)
    ).all()
    return [DisposalPublic.model_validate(r, from_attributes=True) for r in rows], int(total)
