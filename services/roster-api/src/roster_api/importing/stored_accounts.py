"""A district's stored accounts, read as a stream while the import compares them (one per person and
product: two million rows for a million students), instead of loaded into a dict first."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

# (person id, product, account id, active)
AccountRow = tuple[str, str, str, bool]
_FETCH_ROWS = 20_000


class StoredAccounts:
    """Used inside the import's transaction, on its connection (which holds the district's lock)."""

    def __init__(self, conn: sa.Connection, district_id: str) -> None:
        self.conn = conn
        self.district_id = district_id
        self._any: bool | None = None

    @property
    def _postgres(self) -> bool:
        return self.conn.dialect.name == "postgresql"

    def __bool__(self) -> bool:
        if self._any is None:
            mark = "%s" if self._postgres else "?"
            sql = f"SELECT EXISTS (SELECT 1 FROM account WHERE district_id = {mark})"  # noqa: S608
            self._any = bool(self.conn.exec_driver_sql(sql, (self.district_id,)).scalar_one())
        return self._any

    def rows(self) -> Iterator[AccountRow]:
        raw: Any = self.conn.connection.driver_connection
        # PostgreSQL: a server-side cursor, fetched a batch at a time; SQLite's cursor steps lazily
        cur = raw.cursor(name="stored_accounts") if self._postgres else raw.cursor()
        try:
            if self._postgres:
                cur.itersize = _FETCH_ROWS
            mark = "%s" if self._postgres else "?"
            cur.execute(
                f"SELECT person_id, product, account_id, active FROM account WHERE district_id = {mark}",  # noqa: S608
                (self.district_id,),
            )
            for person_id, product, account_id, active in cur:
                yield person_id, product, account_id, bool(active)
        finally:
            cur.close()
