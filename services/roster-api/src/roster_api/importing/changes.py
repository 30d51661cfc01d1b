"""The changes of an import as data a person reviews: one row per school, class, teacher, student, class
teacher, enrollment and account that a dry run, hold or applied import creates, updates (field: old ->
new), deactivates or reactivates. Kept in `import_change`, written in the transaction that records the
import's result; read back as JSON pages or one CSV.

Every update is listed, and every school, class or person deactivated or reactivated. Created rows are
listed up to `diff.CREATED_LISTED` per entity, deactivated or reactivated class teachers, enrollments and
accounts up to `diff.LINKS_LISTED`, and all are counted (a district's first import creates a million
enrollments; nobody reviews them one by one): the API and the CSV say "first N listed, all counted"."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Collection, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, Field, computed_field

from roster_api.importing.csv_format import csv_safe
from roster_api.importing.diff import ENTITIES, ITEM_ENTITY, ChangeItem, Diff, listed_limit
from roster_api.models import ImportChange, ImportRun
from roster_api.pagination import HAS_MORE

ITEM_ENTITIES = tuple(ITEM_ENTITY[name] for name in ENTITIES)
KINDS = ("created", "updated", "deactivated", "reactivated")
CSV_HEADER = ("entity", "change", "id", "name", "line", "changes")
COLUMNS = ("district_id", "import_id", "seq", "entity", "kind", "key", "name", "line", "fields")
_table: sa.Table = ImportChange.__table__  # type: ignore[attr-defined]
_REPORT_ENTITY = {item: report for report, item in ITEM_ENTITY.items()}
# one encoder for every row (json.dumps with options builds a new one per call)
_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

Entity = Literal["school", "class", "teacher", "student", "class_teacher", "enrollment", "account"]
Kind = Literal["created", "updated", "deactivated", "reactivated"]


class FieldChangePublic(BaseModel):
    field: str
    old: str | None = Field(description="null for a created row")
    new: str | None


class ChangePublic(BaseModel):
    entity: Entity
    kind: Kind
    id: str = Field(
        description="School or class ID, a person's Clever ID (else email), `class ID / person` for class "
        "teachers and enrollments, the account id for accounts"
    )
    name: str
    line: int | None = Field(description="The file's line the row comes from, when it does")
    fields: list[FieldChangePublic] = Field(description="Updated: each changed field; created: its values")


class NotListed(BaseModel):
    entity: Entity
    kind: Kind
    listed: int
    total: int


class ChangesPage(BaseModel):
    items: list[ChangePublic]
    total: int = Field(description="Listed changes matching the filter")
    limit: int
    offset: int
    counts: dict[str, dict[str, int]] = Field(
        description="Every change by entity and kind, listed or not (filtered like the list)"
    )
    not_listed: list[NotListed] = Field(
        description="Changes beyond the first listed of an entity and kind (1,000 created per entity; 50,000 "
        "deactivated or reactivated class teachers, enrollments, accounts): counted, not listed"
    )

    @computed_field(description=HAS_MORE)  # type: ignore[prop-decorator]
    @property
    def has_more(self) -> bool:
        return self.offset + len(self.items) < self.total


def store(conn: sa.Connection, *, import_id: str, district_id: str, diff: Diff) -> int:
    """Replaces the listed changes of `import_id` (an approved hold runs again) with those of `diff`, in
    the caller's transaction. Returns how many rows were written."""
    conn.execute(
        sa.delete(_table).where(_table.c.district_id == district_id, _table.c.import_id == import_id)
    )
    rows = ((district_id, import_id, seq, *_row(item)) for seq, item in enumerate(diff.items(), start=1))
    if conn.dialect.name == "postgresql":
        return _copy(conn, rows)
    marks = ", ".join("?" * len(COLUMNS))
    batch = list(rows)
    if batch:
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cur.executemany(f"INSERT INTO import_change ({', '.join(COLUMNS)}) VALUES ({marks})", batch)  # noqa: S608
        finally:
            cur.close()
    return len(batch)


def public_rows(diff: Diff) -> Iterator[dict[str, Any]]:
    """The listed changes of `diff` as `page` and `iter_rows` read them back."""
    for item in diff.items():
        yield _public(item.entity, item.kind, item.key, item.name, item.line, item.fields)


def _row(item: ChangeItem) -> tuple[Any, ...]:
    fields = _json(item.fields) if item.fields else "[]"  # triples become arrays
    return (item.entity, item.kind, item.key[:1024], item.name[:1024], item.line, fields)


def _copy(conn: sa.Connection, rows: Iterable[tuple[Any, ...]]) -> int:
    """PostgreSQL: COPY, so a hold that deactivates a whole district's enrollments stays quick."""
    count = 0
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        with cur.copy(f"COPY import_change ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
                count += 1
    finally:
        cur.close()
    return count


def delete_expired(conn: sa.Connection, *, before: datetime, statuses: Collection[str]) -> int:
    """Deletes the listed changes (names, emails: student data) of the imports in `statuses` created
    before `before`, with the uploads they came from (ROSTER_UPLOAD_RETENTION_DAYS)."""
    runs = ImportRun.__table__  # type: ignore[attr-defined]
    old = sa.select(runs.c.id).where(runs.c.status.in_(list(statuses)), runs.c.created_at < before)
    result = conn.execute(sa.delete(_table).where(_table.c.import_id.in_(old)))
    return int(result.rowcount or 0)


# --- reading ------------------------------------------------------------------------------------


def _where(district_id: str, import_id: str, entity: str | None, kind: str | None) -> list[Any]:
    clauses: list[Any] = [_table.c.district_id == district_id, _table.c.import_id == import_id]
    if entity is not None:
        clauses.append(_table.c.entity == entity)
    if kind is not None:
        clauses.append(_table.c.kind == kind)
    return clauses


def page(
    conn: sa.Connection,
    *,
    district_id: str,
    import_id: str,
    entity: str | None = None,
    kind: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """One page of listed changes in the order they were listed, and how many match."""
    where = _where(district_id, import_id, entity, kind)
    total = conn.execute(sa.select(sa.func.count()).select_from(_table).where(*where)).scalar_one()
    rows = conn.execute(
        sa.select(_table.c.entity, _table.c.kind, _table.c.key, _table.c.name, _table.c.line, _table.c.fields)
        .where(*where)
        .order_by(_table.c.seq)
        .limit(limit)
        .offset(offset)
    ).all()
    return [_public(*row) for row in rows], int(total)


def _public(entity: str, kind: str, key: str, name: str, line: int | None, fields: Any) -> dict[str, Any]:
    return {
        "entity": entity,
        "kind": kind,
        "id": key,
        "name": name,
        "line": line,
        "fields": [{"field": f, "old": old, "new": new} for f, old, new in fields or []],
    }


def iter_rows(
    conn: sa.Connection,
    *,
    district_id: str,
    import_id: str,
    entity: str | None = None,
    kind: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Every listed change, read in batches (the CSV streams them)."""
    where = _where(district_id, import_id, entity, kind)
    last = 0
    while True:
        rows = conn.execute(
            sa.select(
                _table.c.seq,
                _table.c.entity,
                _table.c.kind,
                _table.c.key,
                _table.c.name,
                _table.c.line,
                _table.c.fields,
            )
            .where(*where, _table.c.seq > last)
            .order_by(_table.c.seq)
            .limit(5_000)
        ).all()
        if not rows:
            return
        for seq, *rest in rows:
            last = seq
            yield _public(*rest)


def unlisted(
    report: Mapping[str, Any], entity: str | None = None, kind: str | None = None
) -> list[dict[str, Any]]:
    """Per entity and kind with more changes than were listed: {entity, kind, listed, total}."""
    out: list[dict[str, Any]] = []
    for name, values in (report.get("changes") or {}).items():
        if (
            name not in ITEM_ENTITY
            or entity not in (None, ITEM_ENTITY[name])
            or not isinstance(values, Mapping)
        ):
            continue
        for k in KINDS:
            limit, total = listed_limit(name, k), int(values.get(k) or 0)
            if kind in (None, k) and limit is not None and total > limit:
                out.append({"entity": ITEM_ENTITY[name], "kind": k, "listed": limit, "total": total})
    return out


def counts(report: Mapping[str, Any], entity: str | None = None, kind: str | None = None) -> dict[str, Any]:
    """The import's counts by entity and change (every change, listed or not), filtered like the list."""
    out: dict[str, Any] = {}
    for name, values in (report.get("changes") or {}).items():
        item_entity = ITEM_ENTITY.get(name)
        if item_entity is None or not isinstance(values, Mapping) or entity not in (None, item_entity):
            continue
        out[item_entity] = {k: int(values.get(k) or 0) for k in KINDS if kind in (None, k)}
    return out


def describe(fields: Iterable[Mapping[str, Any]]) -> str:
    """`first_name: Nguy?n -> Nguyen; grade: 3 -> 4`; a created row's values as `field: value`."""
    parts = []
    for f in fields:
        old, new = f["old"], f["new"]
        if old is None:
            parts.append(f"{f['field']}: {_text(new)}")
        else:
            parts.append(f"{f['field']}: {_text(old)} -> {_text(new)}")
    return "; ".join(parts)


def _text(value: object) -> str:
    return "(empty)" if value is None or value == "" else str(value)


def csv_lines(rows: Iterable[Mapping[str, Any]], notes: Iterable[Mapping[str, Any]] = ()) -> Iterator[str]:
    """The CSV, a few thousand lines at a time: a header, one line per listed change, then per entity
    whose created rows were not all listed a line saying how many there are. Every cell is escaped
    against formula injection."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for n, row in enumerate(rows, start=1):
        line = "" if row["line"] is None else str(row["line"])
        cells = (row["entity"], row["kind"], row["id"], row["name"], line, describe(row["fields"]))
        writer.writerow([csv_safe(cell) for cell in cells])
        if n % 2_000 == 0:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    for gap in notes:
        note = f"first {gap['listed']:,} listed, all {gap['total']:,} counted"
        writer.writerow([gap["entity"], gap["kind"], "", note, "", ""])
    yield out.getvalue()


def report_entity(item_entity: str) -> str:
    """`student` -> `students` (the report's name)."""
    return _REPORT_ENTITY[item_entity]
