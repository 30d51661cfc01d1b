"""How far a running import got: plain counters the import bumps (rows read, the phase) and a snapshot
taken by another thread (the lease heartbeat, the CLI's progress bar), which also looks up how far the
file has been read. Nothing here costs the import more than an integer increment per row."""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator
from typing import Any, BinaryIO

from roster_api.importing.schemas import Phase

# Where each phase starts and ends on the 0-100 scale (reading is measured by bytes in between).
_SPAN = {
    Phase.READING: (0.0, 70.0),
    Phase.CHECKING: (70.0, 75.0),
    Phase.COMPARING: (75.0, 85.0),
    Phase.WRITING: (85.0, 99.0),
}


class Progress:
    def __init__(self, total_bytes: int = 0) -> None:
        self.phase = Phase.READING
        self.rows_read = 0
        self.total_bytes = total_bytes
        self.writing_steps = 0  # apply steps done (schools, people, ...)
        # SQLite: the import holds the database's only write lock from "checking" on, so the progress
        # cannot be written to the database until it ends (PostgreSQL: always)
        self.store_blocked = False
        self._fd: int | None = None
        self._rows: Iterator[tuple[int, list[str]]] | None = None
        self._bytes_read = 0
        self._percent = 0.0

    def reading(self, source: BinaryIO | None) -> None:
        """The file the rows come from (None: done with it): its read position is how far the reading
        got."""
        try:
            self._fd = None if source is None else source.fileno()
        except (OSError, ValueError, AttributeError):
            self._fd = None

    def count(self, rows: Iterator[tuple[int, list[str]]]) -> None:
        """`rows` (the parser's generator) is being read. Its line counter is looked up by the thread
        that takes a snapshot, so the import does nothing per row for its progress (a counting wrapper
        cost 2-3 % of the read)."""
        self._rows = rows

    def _rows_read(self) -> int:
        rows = self._rows
        if rows is None:
            return self.rows_read
        try:
            found = inspect.getgeneratorlocals(rows)  # type: ignore[arg-type]
        except TypeError:  # not a generator
            return self.rows_read
        # the line of the last record read (`line`, or `previous` when read through csv.reader); the
        # header is line 1
        line = found.get("line", found.get("previous"))
        if isinstance(line, int) and line > 1:
            self.rows_read = max(self.rows_read, line - 1)
        return self.rows_read

    def read(self, *, rows: int) -> None:
        """Done with the file: `rows` records read."""
        self.rows_read = max(self.rows_read, rows)
        self._rows = None
        self._fd = None

    def enter(self, phase: Phase) -> None:
        self.phase = phase
        if phase is not Phase.READING:
            self._rows_read()
            self._fd = None
            self._rows = None
            self._bytes_read = self.total_bytes

    def step(self, _name: str) -> None:
        self.writing_steps += 1

    def _position(self) -> int:
        fd = self._fd
        if fd is None or self._rows_read() == 0:  # before the rows: the first, quick pass over the file
            return self._bytes_read
        try:
            return min(os.lseek(fd, 0, os.SEEK_CUR), self.total_bytes)
        except OSError:
            return self._bytes_read

    def for_store(self) -> dict[str, Any] | None:
        """The snapshot to write to the database, or None while that would wait for the import."""
        return None if self.store_blocked else self.snapshot()

    def snapshot(self) -> dict[str, Any]:
        """The `progress` of the import's public record; bytes and percent never go back."""
        self._bytes_read = max(self._bytes_read, self._position())
        start, end = _SPAN[self.phase]
        if self.phase is Phase.READING and self.total_bytes:
            done = self._bytes_read / self.total_bytes
        elif self.phase is Phase.WRITING:
            done = 1 - 0.5**self.writing_steps
        else:
            done = 0.0
        self._percent = max(self._percent, round(start + (end - start) * done, 1))
        return {
            "phase": self.phase.value,
            "rows_read": self.rows_read,
            "bytes_read": self._bytes_read,
            "total_bytes": self.total_bytes,
            "percent": self._percent,
        }
