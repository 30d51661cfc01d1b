"""A fresh PostgreSQL database for one test run or one benchmark: created on the server of an admin URL,
optionally migrated, dropped afterwards (also when other connections are still open)."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import psycopg
from psycopg import sql


def libpq_url(url: str) -> str:
    """`postgresql+psycopg://...` (SQLAlchemy's spelling) -> `postgresql://...` (psycopg's)."""
    return re.sub(r"^postgresql\+\w+://", "postgresql://", url)


def sqlalchemy_url(url: str) -> str:
    """`postgresql://...` -> `postgresql+psycopg://...`, what roster-api's ROSTER_DATABASE_URL takes."""
    return "postgresql+psycopg://" + url.split("://", 1)[1]


@dataclass(frozen=True)
class Database:
    name: str
    url: str  # spelled like the admin URL it was made from

    @property
    def libpq_url(self) -> str:
        return libpq_url(self.url)

    @property
    def sqlalchemy_url(self) -> str:
        return sqlalchemy_url(self.url)


def reachable(admin_url: str, timeout: int = 3) -> str | None:
    """None when the server answers, else why not (one line)."""
    try:
        with psycopg.connect(libpq_url(admin_url), connect_timeout=timeout) as conn:
            conn.execute("select 1")
    except psycopg.Error as exc:
        return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:160]}"
    return None


@contextmanager
def fresh_database(
    admin_url: str, *, prefix: str, migrate: Callable[[str], None] | None = None
) -> Iterator[Database]:
    """`<prefix>_<pid>_<random>` on the server of `admin_url`; `migrate(sqlalchemy_url)` runs first
    when given (roster-api's `roster_api.db.migrate`: the harness imports no service)."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    admin = libpq_url(admin_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    database = Database(name, urlsplit(admin_url)._replace(path="/" + name).geturl())
    try:
        if migrate is not None:
            migrate(database.sqlalchemy_url)
        yield database
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
