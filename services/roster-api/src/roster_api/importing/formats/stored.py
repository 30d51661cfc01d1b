"""What the import run calls for a stored upload: a package (OneRoster, Clever's files) read into the
roster, with the district's current roster at hand for a OneRoster delta, its enrollments handed to
the first-import stream, and the kept copy of the upload reduced to what an import reads."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import sqlalchemy as sa

from roster_api.importing.formats import read_upload
from roster_api.importing.formats.current import load_package
from roster_api.importing.formats.oneroster import Package
from roster_api.importing.formats.safezip import UnsafeZip, is_zip, read_members
from roster_api.importing.formats.scrub import scrub_files
from roster_api.importing.normalize import Roster

log = logging.getLogger("roster_api.importing")
PairSink = Callable[[list[tuple[str, str]]], None]


def _current(engine: sa.Engine, district_id: str) -> Callable[[], Package]:
    def load() -> Package:
        # a connection of its own: on SQLite the import's own has not begun its transaction yet; on
        # PostgreSQL the import holds the district's lock, so what is committed is the roster
        with engine.connect() as conn:
            return load_package(conn, district_id)

    return load


def read_for_import(
    source: BinaryIO,
    *,
    path: str | Path,
    engine: sa.Engine,
    district_id: str,
    on_enrollments: PairSink | None,
    early_pairs: bool = True,
    keeping: list[threading.Thread] | None = None,
) -> Roster | None:
    """The roster of a package upload; None for a v1 CSV (the caller reads it as before). Its
    enrollments go to `on_enrollments`: a OneRoster bulk package's while it is read, any other's
    after. EarlyPairsDiffer: what went early is not the roster's (the caller starts again without
    a stream's early pairs: `early=False`). `keeping`: the kept copy is written by a thread added
    to it (the caller joins it before the import ends: it runs while the import waits on the
    database), else before this returns."""
    early = _Early(on_enrollments) if on_enrollments is not None and early_pairs else None
    read: list[dict[str, bytes]] = []  # the zip's files as read, for the kept copy
    roster = read_upload(
        source, current=_current(engine, district_id), on_enrollments=early, on_files=read.append
    )
    if roster is None:
        return None
    if on_enrollments is not None and not roster.errors:
        if early is None or not early.pairs:
            on_enrollments(list(roster.enrollments))
        elif not early.same_as(roster):
            log.warning("early enrollments differ from the roster's; reading again")
            raise EarlyPairsDiffer
    args = (Path(path), read[0] if read else None)
    if keeping is None:
        keep_only_what_is_read(*args)
    else:
        keeping.append(threading.Thread(target=keep_only_what_is_read, args=args, name="keep-upload"))
        keeping[-1].start()
    return roster


class EarlyPairsDiffer(Exception):
    """The enrollments handed on while the package was read are not the roster's (a reader slip)."""


class _Early:
    """The sink of the pairs a reader hands on while it reads, remembering them to check."""

    def __init__(self, sink: PairSink) -> None:
        self.sink = sink
        self.pairs: list[tuple[str, str]] = []

    def __call__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs.extend(pairs)
        self.sink(pairs)

    def same_as(self, roster: Roster) -> bool:
        """The pairs are unique (the reader hands each on once): as many, all in the roster."""
        enrollments = roster.enrollments
        return len(self.pairs) == len(enrollments) and all(pair in enrollments for pair in self.pairs)


def keep_only_what_is_read(path: Path, files: dict[str, bytes] | None = None) -> None:
    """Replaces the stored package with its scrubbed copy (atomically; the hash of what was uploaded
    stays the import's sha256), or removes it if that fails. A file that is not a package we read is
    left as it is. `files`: the
    package's files as the import read them (else the stored zip is read again)."""
    partial = path.with_name(f".{path.name}.scrub")
    try:
        if files is None:
            files = _members(path)
            if files is None:
                return
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            written = scrub_files(files, out)
        if written:
            os.replace(partial, path)
        else:
            partial.unlink()
    except Exception as exc:  # (on a thread: nothing above it would see it)
        # The upload still holds what we never keep (passwords, birth dates, contacts): it goes, and the
        # import goes on with what it read. Only the kind of error is logged (a message could quote data).
        log.warning(
            "could not reduce the kept upload; it is not kept",
            extra={"fields": {"error": type(exc).__name__}},
        )
        for leftover in (partial, path):
            with contextlib.suppress(OSError):
                leftover.unlink()


def _members(path: Path) -> dict[str, bytes] | None:
    """The files of a stored zip; None when it is not one (or one that is refused)."""
    with path.open("rb") as source:
        if not is_zip(source.read(4)):
            return None
        try:
            return read_members(source).files
        except UnsafeZip:
            return None  # refused: the import rejects it; nothing of it is read
