"""A district's stored (class, person) links of one table (class teachers or enrollments), compared with
the links an import wants. Two stores answer the same question:

- `Links`: the pairs loaded into memory (tests, and the `skip` row policy, which edits the roster with
  the stored links of the people its skipped rows name);
- `StoredLinks`: the pairs left in the database. The wanted pairs are staged in a temporary table and
  compared there with one full join, so a nightly re-sync of a million enrollments does not hold them
  twice in Python (once from the file, once from the database); only the differences come back.

Both return each kind of change sorted by (class, person): the same listing and samples whichever store
compared."""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import sqlalchemy as sa

Pair = tuple[str, str]  # (class id, person id)
# person id -> the class ids the import wants them linked to (each once)
Wanted = dict[str, list[str]]
LINK_TABLES = ("section_teacher", "enrollment")
_STAGE_BATCH = 20_000
_SEPARATOR = "\x1f"  # between a person's class ids in a grouped stage row (ASCII unit separator)
_JOIN_WORK_MEM = "256MB"


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
    """The stored pairs in memory: the active ones grouped by person, the inactive ones (few) as pairs.
    Grouped, a district's million enrollments compare as ~170,000 small lists instead of a million
    pairs."""

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
        """Person by person: a list of the same classes as stored is unchanged, which is almost everyone
        in a nightly re-sync."""
        active, inactive = self.active, self.inactive
        new: list[Pair] = []
        on: list[Pair] = []
        off: list[Pair] = []
        total = 0
        for person_id, classes in wanted.items():
            total += len(classes)
            have = active.get(person_id)
            if (
                have is not None
                and len(have) == len(classes)
                and (have == classes or sorted(have) == sorted(classes))
            ):
                continue  # (stored in the order of the file that wrote them, so usually equal as they are)
            stored = set(have) if have else ()
            for class_id in classes:
                if class_id not in stored:
                    pair = (class_id, person_id)
                    (on if pair in inactive else new).append(pair)
            if have:
                keep = set(classes)
                off.extend((class_id, person_id) for class_id in have if class_id not in keep)
        for person_id, have in active.items():
            if person_id not in wanted:
                off.extend((class_id, person_id) for class_id in have)
        new.sort()
        on.sort()
        off.sort()
        return LinkDelta(new, on, off, total - len(new) - len(on))


class StoredLinks:
    """The pairs of `table` for one district, compared where they are stored. Used inside the import's
    transaction, on its connection (which holds the district's lock)."""

    def __init__(self, conn: sa.Connection, table: str, district_id: str) -> None:
        if table not in LINK_TABLES:
            raise ValueError(table)
        self.conn = conn
        self.table = table
        self.district_id = district_id
        self._active: int | None = None
        self._any: bool | None = None

    def _one(self, sql: str) -> Any:
        return self.conn.exec_driver_sql(sql.replace(":d", self._mark), (self.district_id,)).scalar()

    @property
    def _postgres(self) -> bool:
        return self.conn.dialect.name == "postgresql"

    @property
    def _mark(self) -> str:
        return "%s" if self._postgres else "?"

    def active_count(self) -> int:
        if self._active is None:
            sql = f"SELECT count(*) FROM {self.table} WHERE district_id = :d AND active"  # noqa: S608
            self._active = int(self._one(sql))
        return self._active

    def __bool__(self) -> bool:
        if self._any is None:
            sql = f"SELECT EXISTS (SELECT 1 FROM {self.table} WHERE district_id = :d)"  # noqa: S608
            self._any = bool(self._one(sql))
        return self._any

    def compare(self, wanted: Wanted) -> LinkDelta:
        total = sum(map(len, wanted.values()))
        stage = f"import_wanted_{self.table}"
        cur = self.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            grouped = self._postgres and self._stage_grouped(cur, stage, wanted, total)
            if not grouped:
                self._stage_pairs(cur, stage, wanted)
            new, on, off = self._differences(cur, stage, grouped)
            cur.execute(f"DROP TABLE {stage}")
        finally:
            cur.close()
        return LinkDelta(sorted(new), sorted(on), sorted(off), total - len(new) - len(on))

    def _differences(self, cur: Any, stage: str, grouped: bool) -> tuple[list[Pair], list[Pair], list[Pair]]:
        """Every wanted pair not stored active, and every stored active pair not wanted (one full join;
        an inactive stored pair that is not wanted stays as it is)."""
        wanted = (
            f"(SELECT unnest(string_to_array(classes, chr({ord(_SEPARATOR)}))) AS class_id, person_id "  # noqa: S608
            f"FROM {stage})"
            if grouped
            else stage
        )
        sql = (
            f"SELECT w.class_id, w.person_id, s.class_id, s.person_id FROM {wanted} w "  # noqa: S608
            f"FULL JOIN (SELECT class_id, person_id, active FROM {self.table} "
            f"WHERE district_id = {self._mark}) s "
            "ON s.class_id = w.class_id AND s.person_id = w.person_id "
            "WHERE (w.class_id IS NOT NULL AND (s.class_id IS NULL OR NOT s.active)) "
            "OR (w.class_id IS NULL AND s.active)"
        )
        if self._postgres:  # one batch of hashing for a large district, not several on disk
            cur.execute("SELECT set_config('work_mem', %s, true)", (_JOIN_WORK_MEM,))
        cur.execute(sql, (self.district_id,))
        new: list[Pair] = []
        on: list[Pair] = []
        off: list[Pair] = []
        for class_id, person_id, stored_class, stored_person in cur:
            if stored_class is None:
                new.append((class_id, person_id))
            elif class_id is None:
                off.append((stored_class, stored_person))
            else:
                on.append((class_id, person_id))
        return new, on, off

    @staticmethod
    def _stage_grouped(cur: Any, stage: str, wanted: Wanted, total: int) -> bool:
        """PostgreSQL: one row per person (person id, class ids joined by a separator), COPYed as text:
        a tenth of the time of formatting a row per pair. False (nothing staged) when a class id holds
        a character that the text format or the separator would need escaped."""
        text = "".join(
            [f"{person_id}\t{_SEPARATOR.join(classes)}\n" for person_id, classes in wanted.items()]
        )
        people, separators = len(wanted), total - sum(1 for classes in wanted.values() if classes)
        plain = (
            "\\" not in text
            and "\r" not in text
            and text.count("\t") == people
            and text.count("\n") == people
            and text.count(_SEPARATOR) == separators
        )
        if not plain:
            return False
        cur.execute(f"DROP TABLE IF EXISTS {stage}")
        cur.execute(f"CREATE TEMP TABLE {stage} (person_id text, classes text) ON COMMIT DROP")
        with cur.copy(f"COPY {stage} (person_id, classes) FROM STDIN") as copy:
            copy.write(text.encode())
        return True

    def _stage_pairs(self, cur: Any, stage: str, wanted: Wanted) -> None:
        pairs = ((class_id, person_id) for person_id, classes in wanted.items() for class_id in classes)
        if self._postgres:
            cur.execute(f"DROP TABLE IF EXISTS {stage}")
            cur.execute(f"CREATE TEMP TABLE {stage} (class_id text, person_id text) ON COMMIT DROP")
            buffer = io.StringIO()
            rows = csv.writer(buffer, lineterminator="\n")
            with cur.copy(f"COPY {stage} (class_id, person_id) FROM STDIN (FORMAT csv)") as copy:
                for batch in _batches(pairs):
                    rows.writerows(batch)
                    copy.write(buffer.getvalue().encode())
                    buffer.seek(0)
                    buffer.truncate()
        else:
            cur.execute(f"DROP TABLE IF EXISTS temp.{stage}")
            cur.execute(
                f"CREATE TEMP TABLE {stage} (class_id TEXT, person_id TEXT, "
                "PRIMARY KEY (class_id, person_id)) WITHOUT ROWID"
            )
            for batch in _batches(pairs):
                cur.executemany(f"INSERT INTO {stage} VALUES (?, ?)", batch)  # noqa: S608


def _batches(pairs: Iterator[Pair]) -> Iterator[list[Pair]]:
    while batch := list(itertools.islice(pairs, _STAGE_BATCH)):
        yield batch
