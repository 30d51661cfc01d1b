"""Fixtures every test tree shares: a database per backend (SQLite always; PostgreSQL when reachable,
mandatory when ROSTER_TEST_REQUIRE_POSTGRES=1) and a roster-api app with keys.

PostgreSQL: one fresh database per test run (`roster_test_<random>`), migrated once, truncated after each
test and dropped at the end. SQLite: a migrated template file copied for each test."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from roster_harness.postgres import fresh_database, reachable

PG_ADMIN_URL = os.environ.get(
    "ROSTER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_PG = os.environ.get("ROSTER_TEST_REQUIRE_POSTGRES", "") in {"1", "true", "yes"}
_pg_status: dict[str, str | None] = {}


def _pg_error() -> str | None:
    if "error" not in _pg_status:
        _pg_status["error"] = reachable(PG_ADMIN_URL)
    return _pg_status["error"]


def pytest_report_header(config: pytest.Config) -> str:
    error = _pg_error()
    if error is None:
        return f"PostgreSQL tests: on ({PG_ADMIN_URL.rsplit('@', 1)[-1]})"
    if REQUIRE_PG:
        return f"PostgreSQL tests: REQUIRED but unreachable: {error}"
    return f"PostgreSQL tests: SKIPPED, PostgreSQL unreachable ({error}); set ROSTER_TEST_POSTGRES_URL"


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """The PostgreSQL server's admin URL; the test is skipped when it is unreachable (failed in CI)."""
    error = _pg_error()
    if error is not None:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL is required (ROSTER_TEST_REQUIRE_POSTGRES=1) but unreachable: {error}")
        pytest.skip(f"PostgreSQL unreachable: {error}")
    return PG_ADMIN_URL


@pytest.fixture(scope="session")
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test run."""
    from roster_api.db import migrate

    with fresh_database(pg_admin_url, prefix="roster_test", migrate=migrate) as database:
        yield database.sqlalchemy_url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from roster_api.db import migrate

    path = tmp_path_factory.mktemp("sqlite-template") / "roster.db"
    migrate(f"sqlite:///{path}")
    return path


def _truncate_all(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        tables = [
            row[0]
            for row in conn.execute(sa.text("select tablename from pg_tables where schemaname = 'public'"))
        ]
        tables = [t for t in tables if t != "alembic_version"]
        if tables:
            conn.execute(
                sa.text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")
            )
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database: each test runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "roster.db"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return
    url: str = request.getfixturevalue("pg_url")
    _truncate_all(url)
    yield url
    _truncate_all(url)


@pytest.fixture
def roster_settings(database_url: str, tmp_path: Path) -> object:
    from roster_api.settings import Settings

    return Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        run_worker=False,
        run_scheduler=False,
        log_level="INFO",
    )


@pytest.fixture
def roster_engine(roster_settings: object) -> Iterator[sa.Engine]:
    from roster_api.db import make_engine
    from roster_api.settings import Settings

    assert isinstance(roster_settings, Settings)
    engine = make_engine(roster_settings.database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def make_key(roster_engine: sa.Engine) -> Callable[..., str]:
    """`make_key("roster:read", district="d1")` -> a raw API key with those scopes."""
    from roster_api.auth import create_api_key
    from roster_api.db import session_scope

    def make(*scopes: str, district: str | None = None, name: str = "test-key") -> str:
        with session_scope(roster_engine) as session:
            _, raw = create_api_key(session=session, name=name, scopes=list(scopes), district_id=district)
        return raw

    return make
