"""The psycopg store sends a batch of logins to PostgreSQL as one JSON text: values with quotes,
backslashes and non-ASCII letters arrive as sent, and a batch of several logins keeps each one's facts
apart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from roster_api.accounts import flow
from roster_api.accounts.flow import Caller
from roster_api.accounts.pg import PgStore, fair_share
from roster_api.models import Account, Person
from roster_shared.contracts import MatchedBy, ResolveRequest

D1 = "d1" * 12
ODD_EMAIL = "zoë.o'brien\"\\x@d1.org"


@pytest.fixture
async def pg_store(database_url: str) -> AsyncIterator[PgStore]:
    if database_url.startswith("sqlite"):
        pytest.skip("the psycopg store is PostgreSQL only")
    store = PgStore(database_url, min_size=1, max_size=4)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def _person(session: Session, n: int, **fields: Any) -> None:
    session.add(Person(district_id="d1", id=f"p_{n}", role="student", **fields))
    session.flush()
    session.add(Account(district_id="d1", person_id=f"p_{n}", product="rocketlit", account_id=f"acct_{n}"))


def _request(**fields: Any) -> ResolveRequest:
    return ResolveRequest.model_validate(
        {"product": "rocketlit", "clever_district_id": D1, "clever_role": "student", **fields}
    )


async def test_odd_text_and_a_batch_of_logins(
    pg_store: PgStore, roster: Any, roster_engine: sa.Engine
) -> None:
    roster.district("d1", clever_district_id=D1)
    with Session(roster_engine) as s, s.begin():
        _person(s, 0, email=ODD_EMAIL.lower(), first_name="Zoë")
        for n in range(1, 9):
            _person(s, n, clever_id=f"{n:024x}", clever_id_source="roster", first_name=f"N{n}")
    caller = Caller(name="gw", district_id=None)
    requests = [_request(clever_user_id=f"{n:024x}") for n in range(1, 9)]
    requests.append(_request(clever_user_id=f"{99:024x}", email=ODD_EMAIL))
    outcomes = await asyncio.gather(
        *(flow.resolve(store=pg_store, request=r, caller=caller, pepper="p") for r in requests)
    )
    results = [o.result for o in outcomes]
    assert all(r is not None for r in results), [o.decision.diagnosis for o in outcomes]
    assert [r.account_id for r in results if r is not None] == [f"acct_{n}" for n in range(1, 9)] + ["acct_0"]
    last = results[-1]
    assert last is not None
    assert (last.matched_by, last.display_name) == (MatchedBy.EMAIL, "Zoë")


@pytest.mark.parametrize(
    ("waiting", "idle", "share"), [(1, 4, 1), (32, 4, 8), (33, 4, 9), (3, 4, 1), (5, 1, 5), (7, 0, 7)]
)
def test_a_batch_worker_takes_an_even_share_of_what_waits(waiting: int, idle: int, share: int) -> None:
    assert fair_share(waiting, idle) == share


async def test_a_burst_of_logins_is_split_over_the_batch_workers(
    database_url: str, roster: Any, roster_engine: sa.Engine
) -> None:
    """32 logins at once with 2 idle batch workers go as 2 batches of 16, not one of 32 that would leave
    the event loop idle while the database runs it; every login still gets its own account."""
    if database_url.startswith("sqlite"):
        pytest.skip("the psycopg store is PostgreSQL only")
    roster.district("d1", clever_district_id=D1)
    with Session(roster_engine) as s, s.begin():
        for n in range(1, 33):
            _person(s, n, clever_id=f"{n:024x}", clever_id_source="roster")
    store = PgStore(database_url, min_size=1, max_size=8)
    assert store.batch_workers == 2
    sizes: list[int] = []
    run_batch = store._run_batch

    async def counted(batch: list[Any]) -> None:
        sizes.append(len(batch))
        await run_batch(batch)

    store._run_batch = counted  # type: ignore[method-assign]
    await store.open()
    try:
        await asyncio.sleep(0)  # the workers start and wait on the queue
        caller = Caller(name="gw", district_id=None)
        requests = [_request(clever_user_id=f"{n:024x}") for n in range(1, 33)]
        outcomes = await asyncio.gather(
            *(flow.resolve(store=store, request=r, caller=caller, pepper="p") for r in requests)
        )
    finally:
        await store.close()
    assert sorted(sizes) == [16, 16]
    accounts = [o.result.account_id if o.result else None for o in outcomes]
    assert accounts == [f"acct_{n}" for n in range(1, 33)]
