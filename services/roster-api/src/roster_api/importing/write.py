"""One import's write to one district: the transaction, the district's lock, its policy (licenses and
hold thresholds), the writer, the streamed first import, and the commit or rollback at the end."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from roster_api.importing import apply as apply_mod
from roster_api.importing.diff import Current, Plan, Policy, Streamed
from roster_api.importing.normalize import Roster
from roster_api.models import utcnow

PairSink = Callable[[list[tuple[str, str]]], None]


class DistrictWrite:
    """Used on one connection, in this order: `lock()` (before reading the file on PostgreSQL, so that a
    district's first import writes while it reads; after reading on SQLite, whose lock would stop every
    other writer that long), `current()`, then `write()` and `commit()`, or `discard()`; `close()` in
    every case. From the stream's start until the writer is closed, the connection is the writer
    thread's."""

    def __init__(self, conn: sa.Connection, district_id: str) -> None:
        self.conn = conn
        self.district_id = district_id
        self.policy: Policy | None = None
        self.writer: apply_mod.Writer | None = None
        self.stream: apply_mod.FirstImportStream | None = None

    @staticmethod
    def locks_early(conn: sa.Connection, dry_run: bool) -> bool:
        return not dry_run and apply_mod.is_postgres(conn)

    def lock(self, *, stream: bool) -> Policy:
        """Begins the transaction, takes the district's lock (DistrictBusy if another import holds it)
        and reads its policy. With `stream`, a district with nothing yet is written while it is read."""
        apply_mod.begin(self.conn)
        apply_mod.lock_district(self.conn, self.district_id)
        self.policy = apply_mod.load_policy(self.conn, self.district_id)
        if stream:
            self.writer = apply_mod.Writer(self.conn, self.district_id, utcnow())
            self.stream = apply_mod.FirstImportStream.start(self.conn, self.writer, self.district_id)
        return self.policy

    @property
    def locked(self) -> bool:
        return self.policy is not None

    def on_enrollments(self) -> PairSink | None:
        return self.stream.add if self.stream is not None else None

    def restart(self) -> None:
        """The file is read again from the start (it was not UTF-8 after all): whatever the stream wrote
        goes, and the lock and stream are taken again."""
        if self.writer is None:
            return
        self.close()
        self.conn.rollback()
        self.lock(stream=True)

    def stop_streaming(self) -> None:
        """The roster read is not the one to write as it streamed (rows were skipped): whatever the
        stream wrote goes, and the lock is taken again without a stream."""
        if self.stream is None:
            return
        self.close()
        self.conn.rollback()
        self.writer = self.stream = None
        self.lock(stream=False)

    def end_reading(self, roster: Roster) -> None:
        if self.stream is not None:
            self.stream.close()
            if not roster.errors:
                assert self.policy is not None
                self.stream.write_students(roster, self.policy)

    @property
    def streamed(self) -> Streamed | None:
        return self.stream.streamed if self.stream is not None else None

    @property
    def first_import(self) -> bool:
        return self.stream is not None

    def current(self, *, links_in_memory: bool = False) -> Current:
        """The district's roster as it is now (nothing to load for a streamed first import)."""
        if self.stream is not None:
            return Current()
        return apply_mod.load_current(self.conn, self.district_id, links_in_memory=links_in_memory)

    def write(self, plan: Plan, step: apply_mod.Step | None) -> None:
        apply_mod.write_plan(
            self.conn,
            self.district_id,
            plan,
            utcnow(),
            step,
            self.writer,
            written_people=set(self.stream.ids.values()) if self.stream else (),
        )

    def discard(self) -> None:
        """Nothing the stream wrote is kept. The import's own status is written after, in a transaction
        of its own."""
        if self.writer is not None:
            self.writer.close()
            self.conn.rollback()

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()  # idempotent; unblocks the COPY if reading the file failed
        if self.writer is not None:
            self.writer.close()
