"""A district's stored (class, person) links of one table (class teachers or enrollments), compared with
the links an import wants, person by person: a person whose classes are the stored ones is unchanged
after one list comparison, which is almost everyone in a nightly re-sync. Two stores:

- `StoredLinks` (an import): the stored pairs are read as a stream, one person's at a time (PostgreSQL
  aggregates each person's classes into arrays; SQLite reads in the order of the (district, person)
  index), and compared as they come, so a re-sync of a million enrollments does not hold them all in
  Python a second time (the file's are already there);
- `Links`: the pairs loaded into memory (tests, and the `skip` row policy, which edits the roster with
  the stored links of the people its skipped rows name).

Both return each kind of change sorted by (class, person): the same listing and samples whichever
store compared."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, NamedTuple, Protocol

import sqlalchemy as sa

Pair = tuple[str, str]  # (class id, person id)
# person id -> the class ids the import wants them linked to (each once)
Wanted = dict[str, list[str]]
LINK_TABLES = ("section_teacher", "enrollment")
_FETCH_ROWS = 20_000
_AGGREGATE_WORK_MEM = "256MB"


class LinkDelta(NamedTuple):
    new: list[Pair]  # wanted, never stored
    on: list[Pair]  # wanted, stored inactive: reactivated
    off: list[Pair]  # stored active, not wanted: deactivated
    unchanged: int  # wanted and stored active


class LinkStore(Protocol):
    def compare(self, wanted: Wanted) -> LinkDelta: ...

    def active_count(self) -> int: ...

    def __bool__(self) -> bool: ...


@dataclass
class Links:
    """The stored pairs in memory: the active ones grouped by person, the inactive ones (few) as pairs."""

    active: dict[str, list[str]] = field(default_factory=dict)  # person -> class ids
    inactive: set[Pair] = field(default_factory=set)  # (class, person)

    @classmethod
    def of(cls, pairs: dict[Pair, bool]) -> Links:
        """From {(class, person): active}."""
        links = cls()
        for (class_id, person_id), active in pairs.items():
            if active:
                links.active.setdefault(person_id, []).append(class_id)
            else:
                links.inactive.add((class_id, person_id))
        return links

    def active_count(self) -> int:
        return sum(map(len, self.active.values()))

    def __bool__(self) -> bool:
        return bool(self.active or self.inactive)

    def compare(self, wanted: Wanted) -> LinkDelta:
        inactive: dict[str, set[str]] = {}
        for class_id, person_id in self.inactive:
            inactive.setdefault(person_id, set()).add(class_id)
        people = self.active.keys() | inactive.keys()
        stored = ((p, self.active.get(p, []), inactive.get(p, set())) for p in people)
        return _compare(wanted, stored)


class StoredLinks:
    """The pairs of `table` for one district, read where they are stored as the comparison goes. Used
    inside the import's transaction, on its connection (which holds the district's lock)."""

    def __init__(self, conn: sa.Connection, table: str, district_id: str) -> None:
        if table not in LINK_TABLES:
            raise ValueError(table)
        self.conn = conn
        self.table = table
        self.district_id = district_id
        self._active: int | None = None
        self._any: bool | None = None

    @property
    def _postgres(self) -> bool:
        return self.conn.dialect.name == "postgresql"

    def _sql(self, sql: str) -> str:
        return sql.replace(":d", "%s" if self._postgres else "?")

    def active_count(self) -> int:
        if self._active is None:
            sql = f"SELECT count(*) FROM {self.table} WHERE district_id = :d AND active"  # noqa: S608
            self._active = int(self.conn.exec_driver_sql(self._sql(sql), (self.district_id,)).scalar_one())
        return self._active

    def __bool__(self) -> bool:
        if self._any is None:
            sql = f"SELECT EXISTS (SELECT 1 FROM {self.table} WHERE district_id = :d)"  # noqa: S608
            self._any = bool(self.conn.exec_driver_sql(self._sql(sql), (self.district_id,)).scalar_one())
        return self._any

    def compare(self, wanted: Wanted) -> LinkDelta:
        raw: Any = self.conn.connection.driver_connection
        if self._postgres:
            # each person's classes as two arrays (hash aggregate in one pass over the table, in memory),
            # through a server-side cursor fetched a batch at a time
            raw.execute("SELECT set_config('work_mem', %s, true)", (_AGGREGATE_WORK_MEM,))
            cur = raw.cursor(name=f"stored_{self.table}")
            cur.itersize = _FETCH_ROWS
            cur.execute(
                "SELECT person_id, array_agg(class_id) FILTER (WHERE active), "  # noqa: S608
                f"array_agg(class_id) FILTER (WHERE NOT active) FROM {self.table} "
                "WHERE district_id = %s GROUP BY person_id",
                (self.district_id,),
            )
            stored: Iterable[tuple[str, list[str], set[str]]] = (
                (person_id, active or [], set(inactive or ())) for person_id, active, inactive in cur
            )
        else:  # SQLite: the rows in the order of the (district, person) index, its cursor steps lazily
            cur = raw.cursor()
            cur.execute(
                f"SELECT person_id, class_id, active FROM {self.table} "  # noqa: S608
                "WHERE district_id = ? ORDER BY district_id, person_id",
                (self.district_id,),
            )
            stored = _by_person(cur)
        try:
            return _compare(wanted, stored)
        finally:
            cur.close()


def _by_person(rows: Iterable[tuple[str, str, Any]]) -> Iterator[tuple[str, list[str], set[str]]]:
    """Rows (person, class, active), each person's together -> (person, active classes, inactive ones)."""
    for person_id, group in itertools.groupby(rows, key=itemgetter(0)):
        active: list[str] = []
        inactive: set[str] = set()
        for _, class_id, is_active in group:
            if is_active:
                active.append(class_id)
            else:
                inactive.add(class_id)
        yield person_id, active, inactive


def _compare(wanted: Wanted, stored: Iterable[tuple[str, list[str], set[str]]]) -> LinkDelta:
    """`stored`: each person with stored links once, with their active and inactive classes."""
    new: list[Pair] = []
    on: list[Pair] = []
    off: list[Pair] = []
    unseen = set(wanted)
    for person_id, have, was in stored:
        unseen.discard(person_id)
        classes = wanted.get(person_id, ())
        if len(have) == len(classes) and (have == classes or sorted(have) == sorted(classes)):
            continue  # (stored in the order of the file that wrote them, so usually equal as they are)
        keep = set(have)
        for class_id in classes:
            if class_id not in keep:
                (on if class_id in was else new).append((class_id, person_id))
        if have:
            gone = keep.difference(classes)
            off.extend((class_id, person_id) for class_id in have if class_id in gone)
    for person_id in unseen:
        new.extend((class_id, person_id) for class_id in wanted[person_id])
    total = sum(map(len, wanted.values()))
    new.sort()
    on.sort()
    off.sort()
    return LinkDelta(new, on, off, total - len(new) - len(on))
