"""Engine, sessions and migrations. Nothing here runs at import time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import Session

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def make_engine(database_url: str, *, pool_size: int = 10) -> sa.Engine:
    if database_url.startswith("sqlite"):
        path = database_url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            database_url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_pre_ping=False,
            hide_parameters=True,
        )
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        # an error's text must never carry the values of a statement (student emails, names)
        hide_parameters=True,
    )


SQLITE_BUSY_TIMEOUT_MS = 30_000  # how long a SQLite write waits for the one write lock


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


@contextmanager
def session_scope(engine: sa.Engine) -> Iterator[Session]:
    """A unit of work: commits on success, rolls back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def migrate(database_url: str, revision: str = "heads") -> None:
    """Upgrade to every head (a feature branch of the schema may be open until a merge revision)."""
    command.upgrade(alembic_config(database_url), revision)


def migration_heads() -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())


def current_revisions(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def is_ready(engine: sa.Engine) -> tuple[bool, str]:
    """Database reachable and migrated to head."""
    try:
        current = current_revisions(engine)
    except sa.exc.SQLAlchemyError as exc:
        return False, f"database unreachable ({type(exc).__name__})"
    heads = migration_heads()
    if current != heads:
        return False, "database is not migrated to head; run `roster-api migrate`"
    return True, "ok"
