"""The one impure step: read the district's current roster and write a diff's plan, inside the caller's
transaction. Set-based: COPY into the tables (or into temporary tables, then one UPDATE ... FROM) on
PostgreSQL; executemany on SQLite. Never one ORM object per row."""

from __future__ import annotations

import csv
import io
import itertools
import logging
import queue
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

import psycopg
import sqlalchemy as sa

from roster_api.importing.diff import (
    AscendingIds,
    Current,
    LicenseRow,
    PersonRow,
    Plan,
    Policy,
    Streamed,
    created_person,
)
from roster_api.importing.links import Links, StoredLinks
from roster_api.importing.normalize import STUDENT, Roster
from roster_api.importing.stored_accounts import StoredAccounts
from roster_api.models import District, License, Person

Step = Callable[[str], None]
log = logging.getLogger("roster_api.importing")
SQLITE_IMPORT_CACHE_KIB = -131_072  # negative: KiB, i.e. 128 MiB while an import writes


class DistrictBusy(Exception):
    """Another import of the same district holds its lock; try again later."""


def is_postgres(conn: sa.Connection) -> bool:
    return conn.dialect.name == "postgresql"


def begin(conn: sa.Connection) -> None:
    """Starts the apply transaction. On SQLite, BEGIN IMMEDIATE takes the write lock up front, so two
    imports (or an import and anything else writing) serialize instead of failing halfway."""
    if not is_postgres(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def lock_district(conn: sa.Connection, district_id: str) -> None:
    """One import per district at a time across processes and replicas (PostgreSQL advisory lock held
    until the transaction ends). Raises DistrictBusy when another import holds it."""
    if not is_postgres(conn):
        return
    got = conn.execute(
        sa.text("SELECT pg_try_advisory_xact_lock(hashtext('roster-import'), hashtext(:d))"),
        {"d": district_id},
    ).scalar()
    if not got:
        raise DistrictBusy(district_id)


def _cursor(conn: sa.Connection) -> Any:
    return conn.connection.driver_connection.cursor()  # type: ignore[union-attr]


def _fetch(conn: sa.Connection, sql: str, district_id: str) -> list[tuple[Any, ...]]:
    cur = _cursor(conn)
    try:
        cur.execute(sql.replace(":d", "%s" if is_postgres(conn) else "?"), (district_id,))
        rows: list[tuple[Any, ...]] = cur.fetchall()
        return rows
    finally:
        cur.close()


def _load_people(conn: sa.Connection, district_id: str) -> list[PersonRow]:
    """Row by row from a server-side cursor (PostgreSQL), so the result is never held twice; the role,
    the Clever ID's source and the grade (a few distinct values) are one string each, not one a row."""
    shared: dict[Any, Any] = {}
    share = shared.setdefault
    raw: Any = conn.connection.driver_connection
    postgres = is_postgres(conn)
    cur = raw.cursor(name="stored_people") if postgres else raw.cursor()
    if postgres:
        cur.itersize = 20_000
    sql = (
        "SELECT id, role, clever_id, clever_id_source, email, first_name, last_name, grade, active, sis_id "
        "FROM person WHERE district_id = :d"
    )
    cur.execute(sql.replace(":d", "%s" if postgres else "?"), (district_id,))
    try:
        return [
            PersonRow(
                pid, share(role, role), cid, share(src, src), email, first, last, share(g, g), bool(on), sis
            )
            for pid, role, cid, src, email, first, last, g, on, sis in cur
        ]
    finally:
        cur.close()


def _load_links(conn: sa.Connection, table: str, district_id: str) -> Links:
    """The active pairs grouped by person (one Python step per row, no tuple kept per pair), the
    inactive ones as pairs."""
    sql = f"SELECT person_id, class_id FROM {table} WHERE district_id = :d AND "  # noqa: S608 (our names)
    links = Links()
    active = links.active
    get = active.get
    for person_id, class_id in _fetch(conn, sql + "active", district_id):
        classes = get(person_id)
        if classes is None:
            active[person_id] = [class_id]
        else:
            classes.append(class_id)
    links.inactive = {
        (class_id, person_id) for person_id, class_id in _fetch(conn, sql + "NOT active", district_id)
    }
    return links


def load_current(conn: sa.Connection, district_id: str, *, links_in_memory: bool = False) -> Current:
    """Schools, classes, people and accounts are loaded; class teachers and enrollments are compared
    where they are stored (links.StoredLinks), or loaded too with `links_in_memory` (the `skip` row
    policy edits the roster with them)."""
    current = Current()
    for school_id, name, active in _fetch(
        conn, "SELECT school_id, name, active FROM school WHERE district_id = :d", district_id
    ):
        current.schools[school_id] = (name, bool(active))
    for class_id, school_id, name, active in _fetch(
        conn, "SELECT class_id, school_id, name, active FROM section WHERE district_id = :d", district_id
    ):
        current.classes[class_id] = (school_id, name, bool(active))
    current.people = _load_people(conn, district_id)
    if links_in_memory:
        current.class_teachers = _load_links(conn, "section_teacher", district_id)
        current.enrollments = _load_links(conn, "enrollment", district_id)
    else:
        current.class_teachers = StoredLinks(conn, "section_teacher", district_id)
        current.enrollments = StoredLinks(conn, "enrollment", district_id)
    current.accounts = StoredAccounts(conn, district_id)
    return current


ROSTER_TABLES = ("school", "section", "person", "section_teacher", "enrollment", "account")


def refresh_statistics_later(engine: sa.Engine) -> threading.Thread:
    """After a district's first import (PostgreSQL): ANALYZE the roster tables on a thread of its own,
    after the commit. Until autovacuum gets to it (a minute or more), the planner would still count
    the district as empty, and the next import or login could pick a plan that reads all its rows.
    The import does not wait for it; a failure is logged and changes nothing."""

    # a connection of its own, closed when done: it must not outlive the engine in the engine's pool
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)

    def run() -> None:
        try:
            with psycopg.connect(url, autocommit=True) as pg:
                for table in ROSTER_TABLES:
                    pg.execute(f"ANALYZE {table}")
        except Exception as exc:
            log.warning("statistics refresh failed", extra={"fields": {"error": type(exc).__name__}})

    thread = threading.Thread(target=run, name="roster-analyze")
    thread.start()
    return thread


def load_policy(conn: sa.Connection, district_id: str) -> Policy:
    district = conn.execute(
        sa.select(District.hold_deactivate_pct, District.hold_update_pct).where(District.id == district_id)  # type: ignore[call-overload]
    ).one()
    licenses = {
        product: LicenseRow(seats, bool(enforce))
        for product, seats, enforce in conn.execute(
            sa.select(License.product, License.seats, License.enforce_seats).where(  # type: ignore[call-overload]
                License.district_id == district_id
            )
        )
    }
    return Policy(
        licenses=licenses,
        hold_deactivate_pct=float(district.hold_deactivate_pct),
        hold_update_pct=float(district.hold_update_pct),
    )


def csv_field(value: str) -> str:
    """One value as COPY's CSV format reads it back unchanged (quoted only when it has to be)."""
    if "," in value or '"' in value or "\n" in value or "\r" in value:
        return '"' + value.replace('"', '""') + '"'
    return value


class Writer:
    """Writes one table after the other. On PostgreSQL the statements run in order on a background
    thread while this thread formats the next rows: PostgreSQL maintains one table's indexes on one core
    while Python prepares the next table on the other (for a first import of a large district each takes
    seconds). `sync()` waits for what was submitted; `finish()` too, and raises its error if any."""

    def __init__(self, conn: sa.Connection, district_id: str, now: datetime) -> None:
        self.conn = conn
        self.pg = is_postgres(conn)
        self.district_id = district_id
        processor = Person.__table__.c.created_at.type.bind_processor(conn.dialect)  # type: ignore[attr-defined]
        # the exact stored form of the timestamp on this database (SQLite keeps text); for COPY, the
        # text the csv module would write for it on every row, formatted once
        stored = processor(now) if processor else now
        self.now: Any = str(stored) if self.pg else stored
        # New rows' created_at/updated_at: on PostgreSQL the columns' default (the transaction's
        # start, a moment before `now`), so COPY need not parse two timestamps per row (a fifth of
        # an account COPY); SQLite stores the values given.
        self.stamp_columns: tuple[str, ...] = () if self.pg else ("created_at", "updated_at")
        self.stamps: tuple[Any, ...] = () if self.pg else (self.now, self.now)
        self.cur = _cursor(conn)
        self._temp = itertools.count()
        self._cache_size: int | None = None
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._cancelled = self._closed = False
        self._idle = threading.Condition()
        self._submitted = self._done = 0
        if not self.pg:
            # SQLite's default page cache (2 MB) is far smaller than the indexes a large roster writes
            # into; with it every index insert of a first import went back to the file system.
            self._cache_size = int(self.cur.execute("PRAGMA cache_size").fetchone()[0])
            self.cur.execute(f"PRAGMA cache_size = {SQLITE_IMPORT_CACHE_KIB}")

    # --- the background thread (PostgreSQL) -----------------------------------------------------

    def _submit(self, job: Callable[[], None]) -> None:
        if not self.pg:
            job()
            return
        if self._error is not None:
            raise self._error
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="import-writer", daemon=True)
            self._thread.start()
        self._submitted += 1
        self._jobs.put(job)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            if self._error is None and not self._cancelled:
                try:
                    job()
                except BaseException as exc:  # handed to the submitting thread
                    self._error = exc
            with self._idle:
                self._done += 1
                self._idle.notify_all()

    def sync(self) -> None:
        """Waits until everything submitted ran; raises the first error."""
        with self._idle:
            self._idle.wait_for(lambda: self._done == self._submitted)
        if self._error is not None:
            raise self._error

    # --- statements -----------------------------------------------------------------------------

    def insert(self, table: str, columns: Sequence[str], rows: Iterable[tuple[Any, ...]]) -> None:
        """Rows hold `columns` after district_id."""
        d = self.district_id
        cols = ", ".join(("district_id", *columns))
        if self.pg:
            self._copy(
                f"COPY {table} ({cols}) FROM STDIN (FORMAT csv)", _csv_chunks((d, *row) for row in rows)
            )
            return
        marks = ", ".join("?" * (len(columns) + 1))
        self.cur.executemany(
            f"INSERT INTO {table} ({cols}) VALUES ({marks})",  # noqa: S608 (our names)
            ((d, *row) for row in rows),
        )

    def insert_lines(self, table: str, columns: Sequence[str], lines: list[str], suffix: str) -> None:
        """PostgreSQL: COPY of ready CSV lines (after district_id, each ending before `suffix`), written
        in their sorted order: inserting in key order keeps each B-tree append-like (~2.5x faster than
        random order), and sorting strings is much cheaper than sorting tuples."""
        if not lines:
            return
        lines.sort()
        prefix = csv_field(self.district_id) + ","
        cols = ", ".join(("district_id", *columns))
        ending = suffix + "\n" + prefix

        def chunks() -> Iterator[bytes]:
            for start in range(0, len(lines), CHUNK_ROWS):
                yield (prefix + ending.join(lines[start : start + CHUNK_ROWS]) + suffix + "\n").encode()

        self._copy(f"COPY {table} ({cols}) FROM STDIN (FORMAT csv)", chunks())

    def _copy(self, sql: str, chunks: Iterator[bytes]) -> None:
        """COPY in CSV format. The chunks are made here and handed to the writer thread as they are
        ready, so formatting overlaps with PostgreSQL reading the previous ones."""
        pipe = self.open_copy(sql)
        try:
            for data in chunks:
                if self._error is not None or self._cancelled:
                    break
                pipe.put(data)
        finally:
            pipe.put(None)

    def open_copy(self, sql: str) -> queue.SimpleQueue[bytes | None]:
        """PostgreSQL: submits a COPY that writes what is put into the returned pipe until None."""
        pipe: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()

        def job() -> None:
            with self.cur.copy(sql) as copy:
                while (data := pipe.get()) is not None:
                    copy.write(data)

        self._submit(job)
        return pipe

    def update(
        self,
        table: str,
        keys: Sequence[str],
        sets: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
        constants: dict[str, Any],
        expressions: dict[str, str] | None = None,
    ) -> None:
        """Rows hold the key values, then the `sets` values; `constants` apply to every row.
        `expressions` (PostgreSQL only) replace `col = u.col` for the named columns."""
        if not rows:
            return
        d = self.district_id
        if self.pg:
            temp = f"_import_{table}_{next(self._temp)}"
            cols = ", ".join((*keys, *sets))
            self._submit(
                lambda: self.cur.execute(
                    f"CREATE TEMP TABLE {temp} ON COMMIT DROP AS "  # noqa: S608 (our names)
                    f"SELECT {cols} FROM {table} WITH NO DATA"
                )
            )
            self._copy(f"COPY {temp} ({cols}) FROM STDIN (FORMAT csv)", _csv_chunks(rows))
            assignments = [(expressions or {}).get(c, f"{c} = u.{c}") for c in sets]
            assignments += [f"{c} = %s" for c in constants]
            where = " AND ".join(f"t.{k} = u.{k}" for k in keys)
            update_sql = (
                f"UPDATE {table} AS t SET {', '.join(assignments)} "  # noqa: S608 (our names)
                f"FROM {temp} AS u WHERE t.district_id = %s AND {where}"
            )
            params = (*constants.values(), d)
            self._submit(lambda: self.cur.execute(update_sql, params))
            self._submit(lambda: self.cur.execute(f"DROP TABLE {temp}"))
            return
        assignments = [f"{c} = ?" for c in (*sets, *constants)]
        where = " AND ".join(f"{k} = ?" for k in ("district_id", *keys))
        nkeys = len(keys)
        constant_values = tuple(constants.values())
        self.cur.executemany(
            f"UPDATE {table} SET {', '.join(assignments)} WHERE {where}",  # noqa: S608 (our names)
            ((*row[nkeys:], *constant_values, d, *row[:nkeys]) for row in rows),
        )

    def finish(self) -> None:
        """Waits for the writer thread and raises its error, if any (the success path)."""
        self.sync()

    def close(self) -> None:
        """Always called: stops the writer thread (skipping what it has not started) before the
        connection is used again, rolled back or handed back to the pool."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._cancelled = True
            self._jobs.put(None)
            self._thread.join()
        if self._cache_size is not None:  # the connection goes back to the pool
            self.cur.execute(f"PRAGMA cache_size = {self._cache_size}")
        self.cur.close()


CHUNK_ROWS = 20_000


def _csv_chunks(rows: Iterable[tuple[Any, ...]]) -> Iterator[bytes]:
    """Rows as COPY CSV, formatted by the csv module (C) in batches: much cheaper per row than adapting
    each value in Python. None is written as an empty unquoted field, which COPY reads as NULL; no
    column we write holds an empty string (the pipeline rejects empty names and IDs)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    iterator = iter(rows)
    while batch := tuple(itertools.islice(iterator, CHUNK_ROWS)):
        writer.writerows(batch)
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()


class FirstImportStream:
    """A district's first import on PostgreSQL (no roster rows at all yet): everything is new. Each
    enrollment is COPYed while the rest of the file is still being read, so PostgreSQL fills the
    enrollment table and its indexes on the other core; right after the read, the students' person
    rows and accounts follow (write_students), indexed while the diff runs. Each student gets its
    person id here, at its first row, and its accounts their ids; the diff takes them over
    (diff.Streamed) and `write_plan` leaves those rows out. The ids ascend in the order they are
    handed out, so the indexes on them fill at their right edge. If the file turns out to have
    errors, the caller rolls the transaction back like any other failed apply."""

    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self.streamed = Streamed()
        self.ids = self.streamed.person_ids  # student key -> person id
        self._new_id = AscendingIds("p_")
        self._quoted: dict[str, str] = {}
        self._prefix = csv_field(writer.district_id) + ","
        self._pipe = writer.open_copy(
            "COPY enrollment (district_id, class_id, person_id, active) FROM STDIN (FORMAT csv)"
        )
        self._closed = False

    @classmethod
    def start(cls, conn: sa.Connection, writer: Writer, district_id: str) -> FirstImportStream | None:
        """A stream when this import is the district's first (PostgreSQL only), else None."""
        if not writer.pg:
            return None
        exists = " AND ".join(f"NOT EXISTS (SELECT 1 FROM {t} WHERE district_id = :d)" for t in ROSTER_TABLES)  # noqa: S608
        empty = conn.execute(sa.text(f"SELECT {exists}"), {"d": district_id}).scalar()
        return cls(writer) if empty else None

    def add(self, pairs: list[tuple[str, str]]) -> None:
        ids, quoted, new_id = self.ids, self._quoted, self._new_id
        lines = []
        last: str | None = None
        ending = ""
        for class_id, student in pairs:
            if student is not last:  # a student's rows are usually consecutive
                last = student
                person = ids.get(student)
                if person is None:
                    person = ids[student] = new_id()
                ending = f",{person},t\n"
            q = quoted.get(class_id)
            if q is None:
                q = quoted[class_id] = self._prefix + csv_field(class_id)
            lines.append(q + ending)
        self._pipe.put("".join(lines).encode())

    def write_students(self, roster: Roster, policy: Policy) -> None:
        """After a clean read: COPYs the students' person rows and accounts (all new, with ids handed
        out here), so PostgreSQL indexes them while the diff runs. The diff takes the ids over and
        plans these rows too; `write_plan` leaves them out."""
        rows = sorted(
            created_person(self.ids[key], STUDENT, person) for key, person in roster.students.items()
        )
        w = self.writer
        w.insert(
            "person", (*PERSON_COLUMNS, *w.stamp_columns), ((*values, True, *w.stamps) for values in rows)
        )
        products = sorted(p for p in policy.products if p in policy.licenses)
        keys = [(values[0], product) for values in rows for product in products]  # in key order
        account_ids = AscendingIds("acct_").take(len(keys))
        self.streamed.account_ids.update(zip(keys, account_ids, strict=True))
        lines = [
            f"{person},{product},{account}"
            for (person, product), account in zip(keys, account_ids, strict=True)
        ]
        w.insert_lines("account", ACCOUNT_COLUMNS, lines, ",t")

    def close(self) -> None:
        """The file is read: ends the COPY (it finishes on the writer thread). Idempotent."""
        if not self._closed:
            self._closed = True
            self._pipe.put(None)


# new rows' columns, before Writer.stamp_columns
ACCOUNT_COLUMNS = ("person_id", "product", "account_id", "active")
PERSON_COLUMNS = (
    "id",
    "role",
    "clever_id",
    "clever_id_source",
    "email",
    "first_name",
    "last_name",
    "grade",
    "sis_id",
    "active",
)

# A Clever ID bound at login after the roster was read must survive this write (PostgreSQL, where
# logins do not wait for the import; SQLite's write lock already keeps them out).
_KEEP_LOGIN_BINDING = {
    "clever_id": "clever_id = CASE WHEN u.clever_id IS NULL AND t.clever_id_source = 'login' "
    "THEN t.clever_id ELSE u.clever_id END",
    "clever_id_source": "clever_id_source = CASE WHEN u.clever_id IS NULL AND "
    "t.clever_id_source = 'login' THEN t.clever_id_source ELSE u.clever_id_source END",
}


def write_plan(
    conn: sa.Connection,
    district_id: str,
    plan: Plan,
    now: datetime,
    step: Step | None = None,
    writer: Writer | None = None,
    written_people: Collection[str] = (),
) -> None:
    """Writes every change of the plan. The caller owns the transaction; `step` is called between
    steps (progress, and fault injection in tests). `writer`: the one a FirstImportStream already
    wrote the new enrollments with (they are not in the plan then); `written_people`: the ids whose
    person rows and accounts it wrote too (they are in the plan)."""
    # Inserting in key order keeps each primary-key B-tree append-like: ~2.5x faster than random order.
    plan.people_new.sort()
    w = writer or Writer(conn, district_id, now)
    t = w.now
    on = {"active": True, "deactivated_at": None, "updated_at": t}
    off = {"active": False, "deactivated_at": t, "updated_at": t}

    def mark(name: str) -> None:
        if step is not None:
            w.sync()  # the steps a test or a progress report sees are done
            step(name)

    try:
        w.insert(
            "school",
            ("school_id", "name", "active", *w.stamp_columns),
            ((sid, name, True, *w.stamps) for sid, name in plan.schools_new),
        )
        w.update("school", ("school_id",), ("name",), plan.schools_set, on)
        w.update("school", ("school_id",), (), [(s,) for s in plan.schools_off], off)
        mark("schools")
        w.insert(
            "section",
            ("class_id", "school_id", "name", "active", *w.stamp_columns),
            ((cid, sid, name, True, *w.stamps) for cid, sid, name in plan.classes_new),
        )
        w.update("section", ("class_id",), ("school_id", "name"), plan.classes_set, on)
        w.update("section", ("class_id",), (), [(c,) for c in plan.classes_off], off)
        mark("classes")
        person_cols = PERSON_COLUMNS[1:9]
        people_new = plan.people_new
        if written_people:
            people_new = [values for values in people_new if values[0] not in written_people]
        w.insert(
            "person",
            (*PERSON_COLUMNS, *w.stamp_columns),
            ((*values, True, *w.stamps) for values in people_new),
        )
        mark("people_created")
        w.update("person", ("id",), person_cols, plan.people_set, on, _KEEP_LOGIN_BINDING)
        w.update("person", ("id",), (), [(p,) for p in plan.people_off], off)
        mark("people")
        for table, new, on_, off_ in (
            ("section_teacher", plan.class_teachers_new, plan.class_teachers_on, plan.class_teachers_off),
            ("enrollment", plan.enrollments_new, plan.enrollments_on, plan.enrollments_off),
        ):
            if w.pg:
                quoted = {c: csv_field(c) + "," for c in {c for c, _ in new}}
                lines = [quoted[c] + p for c, p in new]
                w.insert_lines(table, ("class_id", "person_id", "active"), lines, ",t")
                del lines
            else:
                new.sort()
                w.insert(table, ("class_id", "person_id", "active"), ((c, p, True) for c, p in new))
            w.update(table, ("class_id", "person_id"), (), on_, {"active": True})
            w.update(table, ("class_id", "person_id"), (), off_, {"active": False})
            mark(table)
        accounts_new = plan.accounts_new
        if written_people:
            accounts_new = [row for row in accounts_new if row[0] not in written_people]
        if w.pg:  # person ids, products and account ids are ours: nothing to quote
            lines = [f"{p},{product},{a}" for p, product, a in accounts_new]
            w.insert_lines("account", ACCOUNT_COLUMNS, lines, ",t")
            del lines
        else:
            accounts_new.sort()
            w.insert(
                "account",
                (*ACCOUNT_COLUMNS, *w.stamp_columns),
                ((p, product, a, True, *w.stamps) for p, product, a in accounts_new),
            )
        w.update("account", ("person_id", "product"), (), plan.accounts_on, {"active": True, "updated_at": t})
        w.update(
            "account", ("person_id", "product"), (), plan.accounts_off, {"active": False, "updated_at": t}
        )
        mark("accounts")
        w.finish()
    finally:
        w.close()
