"""The resolve store on PostgreSQL: an async psycopg pool and prepared statements.

Every login goes through here. The common case (rule 1 succeeds) costs one statement: it gathers what the
rules need (district link, license, the person with this Clever ID, the people with this sis_id and with
this email, their account and schools) and records the attempt. Concurrent logins are batched into one
such statement: two worker tasks each take an even share of the requests waiting (no wait when there is
one), so under load the database runs one statement per batch instead of one per login, one batch runs
while the event loop answers the other, and when idle nothing is delayed. Failures and a first login by
sis_id or email (binding + audit event in a short transaction) then take their own round trip. The flow
and the rules are the same as on SQLAlchemy (`flow.resolve`, `rules.decide`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
import sqlalchemy as sa
from psycopg.types.json import Json
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from roster_api.accounts.flow import BindingRace, BindState, Caller, Gathered
from roster_api.accounts.rules import RULE1_DIAGNOSIS, Candidate, Facts, new_reference, sis_id_role
from roster_api.models import utcnow
from roster_shared.contracts import ResolveRequest

T = TypeVar("T")

# A batch of requests in one statement: gather the facts of each and, when they are a plain rule-1
# success (the Clever ID is an active person of the right role with an active account in a licensed
# product), record that attempt in the same statement. The flow still runs `decide` on every request's
# facts; should it disagree, the speculative record is replaced, so the rules stay defined in one
# place. LIMIT 5 is rules.MAX_EMAIL_CANDIDATES (a test checks they agree). `src` says which lookup
# found the person: c = Clever ID, s = sis_id, e = email.
GATHER_AND_RECORD = """
WITH req AS (
    SELECT * FROM json_to_recordset(%(batch)s::json) AS r(
        idx int4, product text, clever_district_id text, allowed text, clever_user_id text, email text,
        sis_id text, sis_role text, reference text, clever_role text, email_digest text, caller text)
),
facts AS (
    SELECT r.idx, d.id AS district_id, d.licensed, p.src,
           p.id AS person_id, p.role, p.clever_id, p.clever_id_source, p.active AS person_active,
           p.first_name, p.last_name, a.account_id, a.active AS account_active,
           CASE WHEN p.id IS NULL THEN NULL
                WHEN p.role = 'teacher' THEN ARRAY(
                    SELECT DISTINCT s.school_id FROM section_teacher st
                    JOIN section s ON s.district_id = st.district_id AND s.class_id = st.class_id
                    WHERE st.district_id = d.id AND st.person_id = p.id AND st.active AND s.active
                    ORDER BY 1)
                ELSE ARRAY(
                    SELECT DISTINCT s.school_id FROM enrollment e
                    JOIN section s ON s.district_id = e.district_id AND s.class_id = e.class_id
                    WHERE e.district_id = d.id AND e.person_id = p.id AND e.active AND s.active
                    ORDER BY 1)
           END AS school_ids
    FROM req r
    JOIN LATERAL (
        SELECT district.id,
               EXISTS (SELECT 1 FROM license l
                       WHERE l.district_id = district.id AND l.product = r.product) AS licensed
        FROM district
        WHERE district.clever_district_id = r.clever_district_id
          AND (r.allowed IS NULL OR district.id = r.allowed)
    ) d ON true
    LEFT JOIN LATERAL (
        (SELECT 'c'::text AS src, person.* FROM person
         WHERE person.district_id = d.id AND person.clever_id = r.clever_user_id)
        UNION ALL
        (SELECT 's'::text, person.* FROM person
         WHERE person.district_id = d.id AND person.role = r.sis_role AND person.sis_id = r.sis_id
           AND person.clever_id IS DISTINCT FROM r.clever_user_id
         ORDER BY person.id LIMIT 5)
        UNION ALL
        (SELECT 'e'::text, person.* FROM person
         WHERE person.district_id = d.id AND person.email = r.email
           AND person.clever_id IS DISTINCT FROM r.clever_user_id
         ORDER BY person.id LIMIT 5)
    ) p ON true
    LEFT JOIN account a ON a.district_id = d.id AND a.person_id = p.id AND a.product = r.product
),
recorded AS (
    INSERT INTO login_attempt (reference, created_at, product, district_id, clever_district_id,
        clever_user_id, clever_role, email_digest, outcome, reason, matched_by, account_id, person_id,
        caller, rule, diagnosis, roster)
    SELECT r.reference, %(created_at)s, r.product, f.district_id, r.clever_district_id, r.clever_user_id,
        r.clever_role, r.email_digest, 'success', NULL, 'clever_id', f.account_id, f.person_id, r.caller,
        'clever_id', %(rule1_diagnosis)s::text, NULL
    FROM facts f JOIN req r ON r.idx = f.idx
    WHERE f.src = 'c' AND f.licensed AND f.person_active AND f.account_active
      AND CASE f.role WHEN 'student' THEN r.clever_role = 'student'
                      WHEN 'teacher' THEN r.clever_role IN ('teacher', 'staff', 'district_admin')
                      ELSE false END
    ON CONFLICT (reference) DO NOTHING
    RETURNING reference
)
SELECT f.idx, f.district_id, f.licensed, f.src, f.person_id, f.role, f.clever_id, f.clever_id_source,
       f.person_active, f.first_name, f.last_name, f.account_id, f.account_active, f.school_ids,
       rec.reference
FROM facts f JOIN req r ON r.idx = f.idx LEFT JOIN recorded rec ON rec.reference = r.reference
"""

DELETE_ATTEMPT = "DELETE FROM login_attempt WHERE reference = %(reference)s"

INSERT_ATTEMPT = """
INSERT INTO login_attempt (reference, created_at, product, district_id, clever_district_id, clever_user_id,
    clever_role, email_digest, outcome, reason, matched_by, account_id, person_id, caller, rule, diagnosis,
    roster)
VALUES (%(reference)s, %(created_at)s, %(product)s, %(district_id)s, %(clever_district_id)s,
    %(clever_user_id)s, %(clever_role)s, %(email_digest)s, %(outcome)s, %(reason)s, %(matched_by)s,
    %(account_id)s, %(person_id)s, %(caller)s, %(rule)s, %(diagnosis)s, %(roster)s)
ON CONFLICT (reference) DO NOTHING
"""

BIND = """
UPDATE person SET clever_id = %(clever_user_id)s, clever_id_source = 'login', updated_at = %(now)s
WHERE district_id = %(district_id)s AND id = %(person_id)s AND clever_id IS NULL
"""

CURRENT_CLEVER_ID = "SELECT clever_id FROM person WHERE district_id = %(district_id)s AND id = %(person_id)s"

SCHOOL_IDS = """
SELECT DISTINCT s.school_id FROM section s
WHERE s.district_id = %(district_id)s AND s.active AND s.class_id IN (
    SELECT class_id FROM enrollment
    WHERE district_id = %(district_id)s AND person_id = %(person_id)s AND active
    UNION
    SELECT class_id FROM section_teacher
    WHERE district_id = %(district_id)s AND person_id = %(person_id)s AND active)
ORDER BY 1
"""

INSERT_AUDIT = """
INSERT INTO audit_event (created_at, actor, action, district_id, target, details)
VALUES (%(now)s, %(actor)s, 'person.clever_id_bound', %(district_id)s, %(target)s, %(details)s)
"""


def conninfo_from_url(database_url: str) -> str:
    """The SQLAlchemy URL (`postgresql+psycopg://...`) as a libpq URI for psycopg."""
    url = sa.engine.make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def _candidate(row: tuple[Any, ...]) -> Candidate:
    return Candidate(
        person_id=row[3],
        role=row[4],
        clever_id=row[5],
        clever_id_source=row[6],
        active=bool(row[7]),
        first_name=row[8],
        last_name=row[9],
        account_id=row[10],
        account_active=None if row[11] is None else bool(row[11]),
        school_ids=tuple(row[12] or ()),
    )


def facts_of(rows: list[tuple[Any, ...]]) -> Facts:
    """The statement's rows of one request (without idx and reference) as the rules' `Facts`."""
    if not rows:
        return Facts(district_id=None)
    found: dict[str, list[Candidate]] = {"c": [], "s": [], "e": []}
    for row in rows:
        if row[2] is not None:
            found[row[2]].append(_candidate(row))
    return Facts(
        district_id=rows[0][0],
        licensed=bool(rows[0][1]),
        by_clever_id=found["c"][0] if found["c"] else None,
        by_sis_id=tuple(found["s"]),
        by_email=tuple(found["e"]),
    )


@dataclass
class _Waiting:
    """One request waiting for its batch: its parameters, and where its rows go."""

    params: dict[str, Any]
    rows: asyncio.Future[list[tuple[Any, ...]]]


MAX_BATCH = 64
_encode_batch = json.JSONEncoder(ensure_ascii=False).encode


def fair_share(waiting: int, idle_workers: int) -> int:
    """How many of the waiting requests one batch worker takes: an even share with the other idle
    workers. A worker that took everything would leave the event loop idle while the database runs one
    big batch; several smaller batches in flight let it answer one while the database works on the next."""
    return max(1, -(-waiting // max(1, idle_workers)))


class PgUnit:
    """A `flow.ResolveUnit` and its own `async with`: the gather goes through the store's batch; anything
    after it takes one pooled connection, and a binding makes the rest of the unit one durable
    transaction. The exit stack that holds them is made only then: a rule-1 login (nearly all) needs
    neither."""

    def __init__(self, store: PgStore) -> None:
        self._store = store
        self._stack: AsyncExitStack | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def __aenter__(self) -> PgUnit:
        return self

    async def __aexit__(self, *exc_info: Any) -> bool:
        if self._stack is None:
            return False
        return bool(await self._stack.__aexit__(*exc_info))

    def _held(self) -> AsyncExitStack:
        if self._stack is None:
            self._stack = AsyncExitStack()
        return self._stack

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        conn = self._conn
        if conn is None:
            conn = await self._held().enter_async_context(self._store.pool.connection())
            assert conn is not None
            self._conn = conn
        return conn

    async def gather(self, request: ResolveRequest, caller: Caller, digest: str | None) -> Gathered:
        role = sis_id_role(request)
        params = {
            "product": request.product.value,
            "clever_district_id": request.clever_district_id,
            "allowed": caller.district_id,
            "clever_user_id": request.clever_user_id,
            "email": request.email,
            "sis_id": request.sis_id if role else None,
            "sis_role": role.value if role else None,
            "reference": new_reference(),
            "clever_role": request.clever_role.value,
            "email_digest": digest,
            "caller": caller.name,
        }
        rows = await self._store.batched(params)
        recorded = rows[0][-1] if rows else None
        return Gathered(facts_of([row[:-1] for row in rows]), recorded)

    async def discard(self, reference: str) -> None:
        await (await self._connection()).execute(DELETE_ATTEMPT, {"reference": reference})

    async def bind(self, district_id: str, person_id: str, clever_user_id: str) -> BindState:
        conn = await self._connection()
        await self._held().enter_async_context(conn.transaction())
        # a binding changes who owns an account: durable before the answer, like any roster write
        await conn.execute("SET LOCAL synchronous_commit = on")
        keys = {"district_id": district_id, "person_id": person_id}
        try:
            cursor = await conn.execute(BIND, {**keys, "clever_user_id": clever_user_id, "now": utcnow()})
        except psycopg.errors.UniqueViolation as exc:
            raise BindingRace from exc
        if cursor.rowcount == 1:
            return BindState.BOUND
        row = await (await conn.execute(CURRENT_CLEVER_ID, keys)).fetchone()
        return BindState.ALREADY if row is not None and row[0] == clever_user_id else BindState.CONFLICT

    async def school_ids(self, district_id: str, person: Candidate) -> tuple[str, ...]:
        conn = await self._connection()
        cursor = await conn.execute(SCHOOL_IDS, {"district_id": district_id, "person_id": person.person_id})
        return tuple(row[0] for row in await cursor.fetchall())

    async def record(self, attempt: dict[str, Any]) -> str:
        conn = await self._connection()
        roster = attempt["roster"]
        params = {**attempt, "created_at": utcnow(), "roster": None if roster is None else Json(roster)}
        while True:
            params["reference"] = new_reference()
            cursor = await conn.execute(INSERT_ATTEMPT, params)
            if cursor.rowcount == 1:
                return str(params["reference"])

    async def audit_binding(
        self, *, actor: str, district_id: str, person_id: str, details: dict[str, Any]
    ) -> None:
        await (await self._connection()).execute(
            INSERT_AUDIT,
            {
                "now": utcnow(),
                "actor": actor,
                "district_id": district_id,
                "target": person_id,
                "details": Json(details),
            },
        )


class PgStore:
    """A `flow.ResolveStore` on an async psycopg pool, with the batched gather-and-record fast path."""

    # the database is unreachable or the pool exhausted: the flow retries once, then answers 503
    unavailable: tuple[type[Exception], ...] = (
        psycopg.OperationalError,
        psycopg.InterfaceError,
        PoolTimeout,
    )

    def __init__(self, database_url: str, *, min_size: int, max_size: int, timeout: float = 2.0) -> None:
        max_size = max(min_size, max_size)
        self.pool = AsyncConnectionPool(
            conninfo_from_url(database_url),
            min_size=min_size,
            max_size=max_size,
            open=False,
            name="resolve",
            # prepare_threshold=0: every statement is prepared on a connection's first use of it.
            # synchronous_commit=off: a login attempt is committed and visible at once, but its WAL is
            # flushed by the WAL writer (within ~3 x wal_writer_delay) instead of an fsync per login.
            # Only a PostgreSQL crash in that window can lose attempts; bindings turn it back on for
            # their transaction.
            kwargs={"autocommit": True, "prepare_threshold": 0, "options": "-c synchronous_commit=off"},
            # two tries within the gateway's 5 s read timeout, so it gets our 503 rather than its own
            timeout=timeout,
        )
        # two batches in flight: the database runs one while the event loop answers the other. More
        # workers only cut the batches smaller, and a statement's client CPU hardly depends on its size
        # (figures: README, Performance). Half the pool at least stays free for failures and bindings.
        self.batch_workers = max(1, min(2, max_size // 2))
        self._queue: asyncio.Queue[_Waiting] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._idle_workers = 0

    async def open(self) -> None:
        # not waiting: the app starts while the database is down, and /readyz says so
        await self.pool.open(wait=False)
        self._workers = [asyncio.create_task(self._batch_worker()) for _ in range(self.batch_workers)]

    async def close(self) -> None:
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        while not self._queue.empty():
            waiting = self._queue.get_nowait()
            if not waiting.rows.done():
                waiting.rows.set_exception(psycopg.InterfaceError("resolver closed"))
        await self.pool.close()

    async def run(self, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
        return await work()

    def unit(self) -> PgUnit:
        return PgUnit(self)

    async def batched(self, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        waiting = _Waiting(params=params, rows=asyncio.get_running_loop().create_future())
        self._queue.put_nowait(waiting)
        return await waiting.rows

    async def _batch_worker(self) -> None:
        while True:
            self._idle_workers += 1
            try:
                first = await self._queue.get()
            finally:
                self._idle_workers -= 1
            batch = [first]
            share = min(MAX_BATCH, fair_share(self._queue.qsize() + 1, self._idle_workers + 1))
            while len(batch) < share and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            batch = [w for w in batch if not w.rows.done()]  # callers that went away
            if batch:
                await self._run_batch(batch)

    async def _run_batch(self, batch: list[_Waiting]) -> None:
        params = {
            # one JSON text: psycopg dumps a str in C, while twelve arrays cost a Python call per element
            "batch": _encode_batch([{**w.params, "idx": i} for i, w in enumerate(batch)]),
            "created_at": utcnow(),
            "rule1_diagnosis": RULE1_DIAGNOSIS,
        }
        try:
            async with self.pool.connection() as conn:
                cursor = await conn.execute(GATHER_AND_RECORD, params)
                rows = await cursor.fetchall()
        except Exception as exc:  # every caller of the batch gets it, retries once, then answers 503
            for waiting in batch:
                if not waiting.rows.done():
                    waiting.rows.set_exception(exc)
            return
        grouped: list[list[tuple[Any, ...]]] = [[] for _ in batch]
        for row in rows:
            grouped[row[0]].append(row[1:])
        for waiting, mine in zip(batch, grouped, strict=True):
            if not waiting.rows.done():
                waiting.rows.set_result(mine)
