"""Partial uploads (`uploads/<district>/.<import_id>.part`) of processes that died mid-upload.

The request that writes a partial holds an exclusive `flock` on it for as long as it writes; the kernel
drops the lock when the process dies, however it dies (`kill -9` included). A partial nobody holds is
therefore dead and is removed: when `serve` starts and by a periodic sweep, so student rows of an
interrupted upload stay on disk for minutes, not a day."""

from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path
from typing import IO

log = logging.getLogger("roster_api.uploads")
# a partial is locked right after it is created; younger ones are left alone in case the sweep looks
# between the two
GRACE_SECONDS = 1.0
SWEEP_EVERY_SECONDS = 120.0


def hold(file: IO[bytes]) -> None:
    """Marks the partial as being written by this process (until the file is closed or it dies)."""
    fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def _dead(partial: Path) -> bool:
    try:
        fd = os.open(partial, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # a live request is writing it
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def remove_dead_partials(data_dir: Path, *, grace_seconds: float = GRACE_SECONDS) -> int:
    """Removes the partial uploads no live process is writing; returns how many."""
    root = data_dir / "uploads"
    if not root.is_dir():
        return 0
    newest = time.time() - grace_seconds
    removed = 0
    for partial in root.glob("*/.*.part"):
        try:
            if partial.stat().st_mtime > newest or not _dead(partial):
                continue
            partial.unlink()
        except FileNotFoundError:
            continue
        removed += 1
    if removed:
        log.info("partial uploads removed", extra={"fields": {"count": removed}})
    return removed
