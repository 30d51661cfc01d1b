from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from alembic import context
from sqlalchemy import engine_from_config, pool
from sqlmodel import SQLModel

from roster_api import models  # noqa: F401  (registers the tables on SQLModel.metadata)

config = context.config
target_metadata = SQLModel.metadata


@contextmanager
def _quiet_expression_indexes() -> Iterator[None]:
    """SQLite cannot reflect expression indexes, so autogenerate (`alembic check`) leaves the models'
    PostgreSQL-only name-prefix indexes out of its comparison there, as it should, but warns each time
    (and warnings are errors in the tests). PostgreSQL compares them normally."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="autogenerate skipping metadata-specified expression-based index"
        )
        yield


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata, literal_binds=True
    )
    with context.begin_transaction(), _quiet_expression_indexes():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is not None:
        context.configure(connection=connectable, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction(), _quiet_expression_indexes():
            context.run_migrations()
        return
    engine = engine_from_config(
        config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool
    )
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction(), _quiet_expression_indexes():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
