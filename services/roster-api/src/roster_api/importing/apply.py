"""The one impure step: read the district's current roster and write a diff's plan, inside the caller's
transaction. Set-based: COPY into the tables (or into temporary tables, then one UPDATE ... FROM) on
PostgreSQL; executemany on SQLite. Never one ORM object per row."""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from roster_api.importing.diff import Current, LicenseRow, PersonRow, Plan, Policy
from roster_api.models import District, License, Person

Step = Callable[[str], None]
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


def _load_links(conn: sa.Connection, table: str, district_id: str) -> dict[tuple[str, str], bool]:
    """(class, person) -> active. Read as active and inactive rows apart so the driver's own row tuples
    become the keys: no Python step per row (a large district has a million enrollments)."""
    sql = f"SELECT class_id, person_id FROM {table} WHERE district_id = :d AND "  # noqa: S608 (our names)
    links: dict[tuple[str, str], bool] = dict.fromkeys(_fetch(conn, sql + "active", district_id), True)
    links.update(dict.fromkeys(_fetch(conn, sql + "NOT active", district_id), False))
    return links


def load_current(conn: sa.Connection, district_id: str) -> Current:
    current = Current()
    for school_id, name, active in _fetch(
        conn, "SELECT school_id, name, active FROM school WHERE district_id = :d", district_id
    ):
        current.schools[school_id] = (name, bool(active))
    for class_id, school_id, name, active in _fetch(
        conn, "SELECT class_id, school_id, name, active FROM section WHERE district_id = :d", district_id
    ):
        current.classes[class_id] = (school_id, name, bool(active))
    current.people = [
        PersonRow(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], bool(row[8]))
        for row in _fetch(
            conn,
            "SELECT id, role, clever_id, clever_id_source, email, first_name, last_name, grade, active "
            "FROM person WHERE district_id = :d",
            district_id,
        )
    ]
    current.class_teachers = _load_links(conn, "section_teacher", district_id)
    current.enrollments = _load_links(conn, "enrollment", district_id)
    current.accounts = {
        (p, product): (account_id, bool(a))
        for p, product, account_id, a in _fetch(
            conn,
            "SELECT person_id, product, account_id, active FROM account WHERE district_id = :d",
            district_id,
        )
    }
    return current


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


class _Writer:
    def __init__(self, conn: sa.Connection, district_id: str, now: datetime) -> None:
        self.conn = conn
        self.pg = is_postgres(conn)
        self.district_id = district_id
        processor = Person.__table__.c.created_at.type.bind_processor(conn.dialect)  # type: ignore[attr-defined]
        # the exact stored form of the timestamp on this database (SQLite keeps text); for COPY, the
        # text the csv module would write for it on every row, formatted once
        self.now: Any = processor(now) if processor else (str(now) if self.pg else now)
        self.cur = _cursor(conn)
        self._temp = itertools.count()
        self._cache_size: int | None = None
        if not self.pg:
            # SQLite's default page cache (2 MB) is far smaller than the indexes a large roster writes
            # into; with it every index insert of a first import went back to the file system.
            self._cache_size = int(self.cur.execute("PRAGMA cache_size").fetchone()[0])
            self.cur.execute(f"PRAGMA cache_size = {SQLITE_IMPORT_CACHE_KIB}")

    def insert(self, table: str, columns: Sequence[str], rows: Iterable[tuple[Any, ...]]) -> None:
        """Rows hold `columns` after district_id."""
        d = self.district_id
        cols = ", ".join(("district_id", *columns))
        if self.pg:
            self._copy(f"COPY {table} ({cols}) FROM STDIN (FORMAT csv)", ((d, *row) for row in rows))
            return
        marks = ", ".join("?" * (len(columns) + 1))
        self.cur.executemany(
            f"INSERT INTO {table} ({cols}) VALUES ({marks})",  # noqa: S608 (our names)
            ((d, *row) for row in rows),
        )

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
            self.cur.execute(
                f"CREATE TEMP TABLE {temp} ON COMMIT DROP AS "  # noqa: S608 (our names)
                f"SELECT {cols} FROM {table} WITH NO DATA"
            )
            self._copy(f"COPY {temp} ({cols}) FROM STDIN (FORMAT csv)", rows)
            assignments = [(expressions or {}).get(c, f"{c} = u.{c}") for c in sets]
            assignments += [f"{c} = %s" for c in constants]
            where = " AND ".join(f"t.{k} = u.{k}" for k in keys)
            self.cur.execute(
                f"UPDATE {table} AS t SET {', '.join(assignments)} "  # noqa: S608 (our names)
                f"FROM {temp} AS u WHERE t.district_id = %s AND {where}",
                (*constants.values(), d),
            )
            self.cur.execute(f"DROP TABLE {temp}")
            return
        assignments = [f"{c} = ?" for c in (*sets, *constants)]
        where = " AND ".join(f"{k} = ?" for k in ("district_id", *keys))
        nkeys = len(keys)
        constant_values = tuple(constants.values())
        self.cur.executemany(
            f"UPDATE {table} SET {', '.join(assignments)} WHERE {where}",  # noqa: S608 (our names)
            ((*row[nkeys:], *constant_values, d, *row[:nkeys]) for row in rows),
        )

    def _copy(self, sql: str, rows: Iterable[tuple[Any, ...]]) -> None:
        """COPY in CSV format, formatted by the csv module (C) in batches: much cheaper per row than
        adapting each value in Python. None is written as an empty unquoted field, which COPY reads as
        NULL; no column we write holds an empty string (the pipeline rejects empty names and IDs)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        with self.cur.copy(sql) as copy:
            for batch in _batched(rows):
                writer.writerows(batch)
                copy.write(buffer.getvalue().encode())
                buffer.seek(0)
                buffer.truncate()

    def close(self) -> None:
        if self._cache_size is not None:  # the connection goes back to the pool
            self.cur.execute(f"PRAGMA cache_size = {self._cache_size}")
        self.cur.close()


def _batched(rows: Iterable[tuple[Any, ...]], size: int = 20_000) -> Iterator[tuple[tuple[Any, ...], ...]]:
    iterator = iter(rows)
    while batch := tuple(itertools.islice(iterator, size)):
        yield batch


# A Clever ID bound at login after the roster was read must survive this write (PostgreSQL, where
# logins do not wait for the import; SQLite's write lock already keeps them out).
_KEEP_LOGIN_BINDING = {
    "clever_id": "clever_id = CASE WHEN u.clever_id IS NULL AND t.clever_id_source = 'login' "
    "THEN t.clever_id ELSE u.clever_id END",
    "clever_id_source": "clever_id_source = CASE WHEN u.clever_id IS NULL AND "
    "t.clever_id_source = 'login' THEN t.clever_id_source ELSE u.clever_id_source END",
}


def write_plan(
    conn: sa.Connection, district_id: str, plan: Plan, now: datetime, step: Step | None = None
) -> None:
    """Writes every change of the plan. The caller owns the transaction; `step` is called between
    steps (progress, and fault injection in tests)."""
    # Inserting in key order keeps each primary-key B-tree append-like: ~2.5x faster than random order.
    for rows in (plan.people_new, plan.class_teachers_new, plan.enrollments_new, plan.accounts_new):
        rows.sort()
    w = _Writer(conn, district_id, now)
    t = w.now
    on = {"active": True, "deactivated_at": None, "updated_at": t}
    off = {"active": False, "deactivated_at": t, "updated_at": t}

    def mark(name: str) -> None:
        if step is not None:
            step(name)

    try:
        w.insert(
            "school",
            ("school_id", "name", "active", "created_at", "updated_at"),
            ((sid, name, True, t, t) for sid, name in plan.schools_new),
        )
        w.update("school", ("school_id",), ("name",), plan.schools_set, on)
        w.update("school", ("school_id",), (), [(s,) for s in plan.schools_off], off)
        mark("schools")
        w.insert(
            "section",
            ("class_id", "school_id", "name", "active", "created_at", "updated_at"),
            ((cid, sid, name, True, t, t) for cid, sid, name in plan.classes_new),
        )
        w.update("section", ("class_id",), ("school_id", "name"), plan.classes_set, on)
        w.update("section", ("class_id",), (), [(c,) for c in plan.classes_off], off)
        mark("classes")
        person_cols = ("role", "clever_id", "clever_id_source", "email", "first_name", "last_name", "grade")
        w.insert(
            "person",
            ("id", *person_cols, "active", "created_at", "updated_at"),
            ((*values, True, t, t) for values in plan.people_new),
        )
        mark("people_created")
        w.update("person", ("id",), person_cols, plan.people_set, on, _KEEP_LOGIN_BINDING)
        w.update("person", ("id",), (), [(p,) for p in plan.people_off], off)
        mark("people")
        for table, new, on_, off_ in (
            ("section_teacher", plan.class_teachers_new, plan.class_teachers_on, plan.class_teachers_off),
            ("enrollment", plan.enrollments_new, plan.enrollments_on, plan.enrollments_off),
        ):
            w.insert(table, ("class_id", "person_id", "active"), ((c, p, True) for c, p in new))
            w.update(table, ("class_id", "person_id"), (), on_, {"active": True})
            w.update(table, ("class_id", "person_id"), (), off_, {"active": False})
            mark(table)
        w.insert(
            "account",
            ("person_id", "product", "account_id", "active", "created_at", "updated_at"),
            ((p, product, a, True, t, t) for p, product, a in plan.accounts_new),
        )
        w.update("account", ("person_id", "product"), (), plan.accounts_on, {"active": True, "updated_at": t})
        w.update(
            "account", ("person_id", "product"), (), plan.accounts_off, {"active": False, "updated_at": t}
        )
        mark("accounts")
    finally:
        w.close()
