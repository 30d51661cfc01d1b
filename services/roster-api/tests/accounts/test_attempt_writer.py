"""SQLite: a resolve whose attempt cannot take the write lock at once hands it to the background writer,
answers without waiting, and the attempt is written once the lock is free (flush, stop). A binding
still takes the lock, so its attempt and audit event commit with it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session, func, select

from roster_api.models import LoginAttempt, Person
from roster_shared.contracts import ResolveRequest

D1 = "d1" * 12


def cid(n: int) -> str:
    return f"{n:024x}"


@pytest.fixture
def sqlite_engine(roster_engine: sa.Engine, database_url: str) -> sa.Engine:
    if not database_url.startswith("sqlite"):
        pytest.skip("the background writer is SQLite's (one writer at a time)")
    return roster_engine


@contextmanager
def write_lock(engine: sa.Engine) -> Iterator[threading.Event]:
    """Another writer (an import, say) holds the write lock until the event is set (or the block ends)."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with engine.connect() as connection:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            taken.set()
            release.wait(30)
            connection.exec_driver_sql("ROLLBACK")

    holder = threading.Thread(target=hold)
    holder.start()
    assert taken.wait(10)
    try:
        yield release
    finally:
        release.set()
        holder.join()


def attempts(engine: sa.Engine) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(LoginAttempt)).one()


def request(**fields: Any) -> ResolveRequest:
    body = {"product": "rocketlit", "clever_user_id": cid(2), "clever_district_id": D1}
    return ResolveRequest.model_validate({"clever_role": "student", **body, **fields})


async def test_a_resolve_does_not_wait_for_a_busy_write_lock(roster: Any, sqlite_engine: sa.Engine) -> None:
    from roster_api.accounts.attempts import AttemptWriter
    from roster_api.accounts.flow import Caller, resolve
    from roster_api.accounts.service import SqlStore

    roster.district("d1", clever_district_id=D1, licenses={"rocketlit": 10})
    roster.person("d1", "student", clever_id=cid(2), email="stu@d1.org")
    writer = AttemptWriter(sqlite_engine)
    writer.start()
    store = SqlStore(sqlite_engine, writer)
    caller = Caller(name="gateway", district_id=None)
    try:
        with write_lock(sqlite_engine) as release:
            started = time.perf_counter()
            ok = await resolve(store=store, request=request(), caller=caller, pepper="p")
            other = request(clever_user_id=cid(9))
            failed = await resolve(store=store, request=other, caller=caller, pepper="p")
            assert time.perf_counter() - started < 1.0
            assert ok.result is not None
            assert failed.result is None
            assert attempts(sqlite_engine) == 0  # queued: the lock is still held
            assert not writer.flush(timeout=0.2)
            release.set()
            assert await asyncio.to_thread(writer.flush)
        with Session(sqlite_engine) as session:
            assert session.get(LoginAttempt, ok.reference) is not None
            assert session.get(LoginAttempt, failed.reference) is not None
    finally:
        writer.stop()


async def test_stop_writes_what_is_queued(roster: Any, sqlite_engine: sa.Engine) -> None:
    from roster_api.accounts.attempts import AttemptWriter
    from roster_api.accounts.flow import Caller, resolve
    from roster_api.accounts.service import SqlStore

    roster.district("d1", clever_district_id=D1, licenses={"rocketlit": 10})
    writer = AttemptWriter(sqlite_engine)
    writer.start()
    store = SqlStore(sqlite_engine, writer)
    caller = Caller(name="gateway", district_id=None)
    try:
        with write_lock(sqlite_engine) as release:
            for n in range(3):
                login = request(clever_user_id=cid(n))
                await resolve(store=store, request=login, caller=caller, pepper="p")
            assert attempts(sqlite_engine) == 0
            release.set()
            writer.stop()
    finally:
        writer.stop()
    assert attempts(sqlite_engine) == 3
    assert not writer.submit({})  # stopped: the caller writes the attempt itself


async def test_a_binding_waits_for_the_lock_and_commits_with_its_attempt(
    roster: Any, sqlite_engine: sa.Engine
) -> None:
    from roster_api.accounts.attempts import AttemptWriter
    from roster_api.accounts.flow import Caller, resolve
    from roster_api.accounts.service import SqlStore

    roster.district("d1", clever_district_id=D1, licenses={"rocketlit": 10})
    newcomer = roster.person("d1", "student", email="new@d1.org")
    writer = AttemptWriter(sqlite_engine)
    writer.start()
    store = SqlStore(sqlite_engine, writer)
    caller = Caller(name="gateway", district_id=None)
    first_login = request(clever_user_id=cid(40), email="new@d1.org")
    try:
        with write_lock(sqlite_engine) as release:
            binding = asyncio.create_task(
                resolve(store=store, request=first_login, caller=caller, pepper="p")
            )
            await asyncio.sleep(0.3)
            assert not binding.done()  # waits for the other writer
            release.set()
            outcome = await binding
        assert outcome.result is not None
        assert outcome.result.matched_by == "email"
        assert attempts(sqlite_engine) == 1  # written with the binding, not queued
        with Session(sqlite_engine) as session:
            person = session.exec(select(Person).where(Person.id == newcomer.person_id)).one()
            assert person.clever_id == cid(40)
    finally:
        writer.stop()
