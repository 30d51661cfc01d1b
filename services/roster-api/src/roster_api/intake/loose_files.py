"""Clever's loose SFTP files, gathered into one import.

Clever's SFTP export uploads `schools.csv`, `students.csv`, `teachers.csv`, `sections.csv`,
`enrollments.csv` (and optionally `staff.csv`) one by one. The SFTP server keeps them in the district's
folder without importing any of them alone; this watcher looks at each folder every few seconds and,
once the set is complete and none of its files has changed for `sftp_loose_quiet_seconds`:

- packs them into `clever.zip` (stored, not compressed) and queues it like an uploaded zip (source
  `sftp`), so the import, its results file and the nightly re-sync (a district whose nightly file is
  `clever.zip`) see one Clever package;
- removes the loose files it packed, so nothing is imported twice.

A set that is still incomplete after the quiet period gets a results file naming the missing files
(once per state of the folder); its files stay until the missing ones arrive or retention removes them.
A loose name whose header is not Clever's (a format v1 roster called `students.csv`) is an ordinary upload.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import os
import secrets
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from roster_api.errors import RosterError
from roster_api.importing.formats.table import canonical
from roster_api.importing.uploads import Enqueue
from roster_api.intake.results import district_sftp_dir
from roster_api.models import District
from roster_api.settings import Settings

log = logging.getLogger("roster_api.sftp.loose")

REQUIRED = ("schools.csv", "students.csv", "teachers.csv", "sections.csv", "enrollments.csv")
OPTIONAL = ("staff.csv",)
LOOSE_NAMES = frozenset(REQUIRED + OPTIONAL)
# the id column each of Clever's files starts its rows with
_ID_COLUMN = {
    "schools.csv": "school_id",
    "students.csv": "student_id",
    "teachers.csv": "teacher_id",
    "sections.csv": "section_id",
    "enrollments.csv": "section_id",
    "staff.csv": "staff_id",
}
PACKAGE_NAME = "clever.zip"
RESULTS_DIR = "results"
PARTIAL_DIR = ".partial"
MAX_POLL_SECONDS = 2.0
HEADER_BYTES = 4096
STALE_CLAIM_SECONDS = 3600.0


def is_clever_file(name: str, path: Path) -> bool:
    """A loose name whose header carries Clever's id column for that file (not format v1's columns)."""
    column = _ID_COLUMN.get(name)
    if column is None:
        return False
    try:
        with path.open("rb") as fh:
            head = fh.read(HEADER_BYTES)
    except OSError:
        return False
    if head.startswith(codecs.BOM_UTF8):
        head = head[len(codecs.BOM_UTF8) :]
    first = head.replace(b"\r", b"\n").split(b"\n", 1)[0].decode("utf-8", errors="replace")
    header = {canonical(c.strip().strip('"')) for sep in (",", "\t", ";") for c in first.split(sep)}
    return column in header and "class_id" not in header and "student_first_name" not in header


# (name, inode, size, mtime_ns) of each loose file present: any upload or change alters it
Signature = tuple[tuple[str, int, int, int], ...]


@dataclass
class _Folder:
    signature: Signature = ()
    since: float = field(default_factory=time.monotonic)
    reported: Signature = ()
    uploader: str = ""


class LooseFiles:
    """One per SFTP server: `touched()` after each loose upload, `run()` as a background task."""

    def __init__(
        self,
        *,
        settings: Settings,
        engine: sa.Engine,
        enqueue: Callable[[], Enqueue],
        busy: Callable[[str], bool],
        lock: Callable[[str], asyncio.Lock],
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.quiet = settings.sftp_loose_quiet_seconds
        self._enqueue = enqueue
        self._busy = busy
        self._lock = lock
        self.folders: dict[str, _Folder] = {}
        self.changed = asyncio.Event()  # set after each pass that packed or reported something

    def touched(self, district_id: str, username: str) -> None:
        folder = self.folders.setdefault(district_id, _Folder())
        folder.since = time.monotonic()
        folder.uploader = username

    async def run(self) -> None:
        # Loose files left by an earlier run of the server get a full quiet period from now.
        for district_id in await asyncio.to_thread(self._districts_with_loose_files):
            self.folders.setdefault(district_id, _Folder())
        interval = min(MAX_POLL_SECONDS, max(self.quiet / 4, 0.05))
        while True:
            await asyncio.sleep(interval)
            for district_id in list(self.folders):
                try:
                    await self.check(district_id)
                except Exception:  # one folder's trouble must not stop the others
                    log.exception(
                        "sftp loose files not processed",
                        extra={"fields": {"event": "sftp.loose.failed", "district_id": district_id}},
                    )

    def _districts_with_loose_files(self) -> list[str]:
        base = self.settings.data_dir / "sftp"
        if not base.is_dir():
            return []
        return [d.name for d in base.iterdir() if d.is_dir() and _signature(d)]

    async def check(self, district_id: str) -> None:
        folder = self.folders[district_id]
        root = district_sftp_dir(self.settings, district_id)
        signature = await asyncio.to_thread(_signature, root)
        now = time.monotonic()
        if signature != folder.signature or self._busy(district_id):
            folder.signature, folder.since = signature, now
            return
        if not signature:
            del self.folders[district_id]
            return
        if now - folder.since < self.quiet:
            return
        present = {entry[0] for entry in signature}
        missing = [name for name in REQUIRED if name not in present]
        if missing:
            if folder.reported != signature:
                folder.reported = signature
                await asyncio.to_thread(_write_missing, root, sorted(present), missing, self.quiet)
                self.changed.set()
            return
        async with self._lock(district_id):
            await asyncio.to_thread(self._package, district_id, root, signature, folder.uploader)
        del self.folders[district_id]
        self.changed.set()

    def _package(self, district_id: str, root: Path, signature: Signature, uploader: str) -> None:
        """Packs and queues the set, unless another server sharing the folder is doing it already."""
        claim = root / PARTIAL_DIR / "clever-files.claim"
        claim.parent.mkdir(exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            if time.time() - claim.lstat().st_mtime > STALE_CLAIM_SECONDS:
                claim.rmdir()  # left by a crash
        try:
            claim.mkdir(mode=0o700)
        except FileExistsError:
            return
        try:
            if _signature(root) == signature:  # not packed by another server meanwhile
                self._pack_and_queue(district_id, root, signature, uploader)
        finally:
            claim.rmdir()

    def _pack_and_queue(self, district_id: str, root: Path, signature: Signature, uploader: str) -> None:
        temp = root / PARTIAL_DIR / f"{PACKAGE_NAME}.{secrets.token_hex(8)}.partial"
        try:
            with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_STORED) as package:
                for name, *_ in signature:
                    package.write(root / name, arcname=name)
            import_id, failure = self._enqueue_package(district_id, temp, uploader)
            os.replace(temp, root / PACKAGE_NAME)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        for name, inode, size, mtime in signature:
            path = root / name
            with contextlib.suppress(FileNotFoundError):
                info = path.stat(follow_symlinks=False)
                if (info.st_ino, info.st_size, info.st_mtime_ns) == (inode, size, mtime):
                    path.unlink()  # a file replaced since it was packed stays for the next set
        if failure is not None:
            _write_note(
                root,
                f"NOT QUEUED: Clever's files were saved as {PACKAGE_NAME} but not queued: "
                f"{failure}. The nightly sync will pick it up, or upload the files again.",
            )
        log.info(
            "sftp loose files packaged",
            extra={
                "fields": {
                    "event": "sftp.loose.packaged",
                    "district_id": district_id,
                    "files": [entry[0] for entry in signature],
                    "import_id": import_id,
                }
            },
        )

    def _enqueue_package(self, district_id: str, path: Path, uploader: str) -> tuple[str | None, str | None]:
        with Session(self.engine) as session:
            district = session.get(District, district_id)
            wanted = district is not None and district.import_on_upload
        if not wanted:
            return None, None
        try:
            run: Any = self._enqueue()(
                engine=self.engine,
                settings=self.settings,
                district_id=district_id,
                source="sftp",
                src_path=path,
                filename=PACKAGE_NAME,
                created_by=f"sftp:{uploader or 'loose-files'}",
            )
        except RosterError as exc:
            return None, exc.message
        run_id = getattr(run, "id", None)
        return (str(run_id) if run_id is not None else None), None


def _signature(root: Path) -> Signature:
    entries = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(root):
            name = entry.name
            if name not in LOOSE_NAMES or not entry.is_file(follow_symlinks=False):
                continue
            info = entry.stat(follow_symlinks=False)
            entries.append((name, info.st_ino, info.st_size, info.st_mtime_ns))
    return tuple(sorted(entries))


def _stamp() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}"


def _write_note(root: Path, text: str) -> Path:
    results = root / RESULTS_DIR
    results.mkdir(exist_ok=True, mode=0o700)
    path = results / f"clever-files.{_stamp()}-{secrets.token_hex(3)}.txt"
    temp = results / f".{path.name}.{secrets.token_hex(4)}.tmp"
    temp.write_text(text + "\n", encoding="utf-8")
    os.replace(temp, path)
    return path


def _write_missing(root: Path, present: list[str], missing: list[str], quiet: float) -> Path:
    return _write_note(
        root,
        "INCOMPLETE: nothing was imported. Clever's files are imported together once all of "
        f"{', '.join(REQUIRED)} have arrived.\n"
        f"Received: {', '.join(present)}\n"
        f"Missing: {', '.join(missing)}\n"
        f"What to do next: upload the missing file(s); the set is imported {quiet:g} seconds after the "
        "last one arrives. Or send all of Clever's files in one zip.",
    )
