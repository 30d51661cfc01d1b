"""Resolve on PostgreSQL with an async psycopg pool and prepared statements.

Every login goes through here. The common case (rule 1 succeeds) costs one statement: it gathers what the
rules need (district link, license, the person with this Clever ID, the people with this email, their
account and schools) and records the attempt. Concurrent logins are batched into one such statement: a
few worker tasks each take whatever requests are waiting (no wait when there is one), so under load the
database runs one statement per batch instead of one per login, and when idle nothing is delayed.
Failures and the first login by email (rule 2: binding + audit event in a short transaction) then take
their own round trip. The rules are the same `decide` the SQLAlchemy path uses."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg.types.json import Json
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from roster_api.accounts.rules import (
    RULE1_DIAGNOSIS,
    Candidate,
    Decision,
    Facts,
    decide,
    email_digest,
    new_reference,
)
from roster_api.accounts.service import Caller, Outcome, build_result, race_decision
from roster_api.errors import RosterError
from roster_api.models import utcnow
from roster_shared.contracts import MatchedBy, ResolveRequest
from roster_shared.errors import ErrorCode

_log = logging.getLogger("roster_api.resolve")

# A batch of requests in one statement: gather the facts of each and, when they are a plain rule-1
# success (the Clever ID is an active person of the right role with an active account in a licensed
# product), record that attempt in the same statement. Python still runs `decide` on every request's
# facts; should it disagree, the speculative record is replaced (see `_resolve`), so the rules stay
# defined in one place. LIMIT 5 is rules.MAX_EMAIL_CANDIDATES (a test checks they agree).
GATHER_AND_RECORD = """
WITH req AS (
    SELECT * FROM unnest(
        %(idx)s::int4[], %(product)s::text[], %(clever_district_id)s::text[], %(allowed)s::text[],
        %(clever_user_id)s::text[], %(email)s::text[], %(reference)s::text[], %(clever_role)s::text[],
        %(email_digest)s::text[], %(caller)s::text[]
    ) AS r(idx, product, clever_district_id, allowed, clever_user_id, email, reference, clever_role,
           email_digest, caller)
),
facts AS (
    SELECT r.idx, d.id AS district_id, d.licensed,
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
        (SELECT * FROM person
         WHERE person.district_id = d.id AND person.clever_id = r.clever_user_id)
        UNION ALL
        (SELECT * FROM person
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
    WHERE f.clever_id = r.clever_user_id AND f.licensed AND f.person_active AND f.account_active
      AND CASE f.role WHEN 'student' THEN r.clever_role = 'student'
                      WHEN 'teacher' THEN r.clever_role IN ('teacher', 'staff', 'district_admin')
                      ELSE false END
    ON CONFLICT (reference) DO NOTHING
    RETURNING reference
)
SELECT f.idx, f.district_id, f.licensed, f.person_id, f.role, f.clever_id, f.clever_id_source,
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

INSERT_AUDIT = """
INSERT INTO audit_event (created_at, actor, action, district_id, target, details)
VALUES (%(now)s, %(actor)s, 'person.clever_id_bound', %(district_id)s, %(target)s, %(details)s)
"""


class DatabaseUnavailable(RosterError):
    status_code = 503
    code = ErrorCode.SERVICE_UNAVAILABLE


def conninfo_from_url(database_url: str) -> str:
    """The SQLAlchemy URL (`postgresql+psycopg://...`) as a libpq URI for psycopg."""
    url = sa.engine.make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def _facts(rows: list[tuple[Any, ...]], clever_user_id: str) -> Facts:
    if not rows:
        return Facts(district_id=None)
    district_id, licensed = rows[0][0], bool(rows[0][1])
    by_clever_id: Candidate | None = None
    by_email: list[Candidate] = []
    for row in rows:
        if row[2] is None:
            continue
        candidate = Candidate(
            person_id=row[2],
            role=row[3],
            clever_id=row[4],
            clever_id_source=row[5],
            active=bool(row[6]),
            first_name=row[7],
            last_name=row[8],
            account_id=row[9],
            account_active=None if row[10] is None else bool(row[10]),
            school_ids=tuple(row[11] or ()),
        )
        if candidate.clever_id == clever_user_id:
            by_clever_id = candidate
        else:
            by_email.append(candidate)
    return Facts(
        district_id=district_id, licensed=licensed, by_clever_id=by_clever_id, by_email=tuple(by_email)
    )


@dataclass
class _Waiting:
    """One request waiting for its batch: its parameters, and where its rows go."""

    params: dict[str, Any]
    rows: asyncio.Future[list[tuple[Any, ...]]]


BATCH_COLUMNS = (
    "product",
    "clever_district_id",
    "allowed",
    "clever_user_id",
    "email",
    "reference",
    "clever_role",
    "email_digest",
    "caller",
)
MAX_BATCH = 64


class PgResolver:
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
            # flushed by the WAL writer (within ~3 x wal_writer_delay) instead of an fsync per login,
            # which measured ~10 ms each here and capped resolve at ~150/s. Only a PostgreSQL crash in
            # that window can lose attempts; bindings (rule 2) turn it back on for their transaction.
            kwargs={"autocommit": True, "prepare_threshold": 0, "options": "-c synchronous_commit=off"},
            # two tries within the gateway's 5 s read timeout, so it gets our 503 rather than its own
            timeout=timeout,
        )
        # batch workers keep at least half the pool free for failures and bindings
        self.batch_workers = max(1, min(4, max_size // 2))
        self._queue: asyncio.Queue[_Waiting] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []

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

    async def _batch_worker(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            batch = [w for w in batch if not w.rows.done()]  # callers that went away
            if not batch:
                continue
            params: dict[str, Any] = {"idx": list(range(len(batch)))}
            for column in BATCH_COLUMNS:
                params[column] = [w.params[column] for w in batch]
            params["created_at"] = utcnow()
            params["rule1_diagnosis"] = RULE1_DIAGNOSIS
            try:
                async with self.pool.connection() as conn:
                    cursor = await conn.execute(GATHER_AND_RECORD, params)
                    rows = await cursor.fetchall()
            except Exception as exc:  # every caller of the batch gets it, retries once, then answers 503
                for waiting in batch:
                    if not waiting.rows.done():
                        waiting.rows.set_exception(exc)
                continue
            grouped: list[list[tuple[Any, ...]]] = [[] for _ in batch]
            for row in rows:
                grouped[row[0]].append(row[1:])
            for waiting, mine in zip(batch, grouped, strict=True):
                if not waiting.rows.done():
                    waiting.rows.set_result(mine)

    async def resolve(self, *, request: ResolveRequest, caller: Caller, pepper: str) -> Outcome:
        # one retry: a pooled connection may have been cut (database restart, failover)
        for attempt in (1, 2):
            try:
                return await self._resolve(request=request, caller=caller, pepper=pepper)
            except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
                _log.warning("resolve: database error %s (try %d)", type(exc).__name__, attempt)
                if attempt == 2:
                    raise DatabaseUnavailable("The roster database is unavailable; try again.") from exc
        raise AssertionError("unreachable")

    async def _resolve(self, *, request: ResolveRequest, caller: Caller, pepper: str) -> Outcome:
        waiting = _Waiting(
            params={
                "product": request.product.value,
                "clever_district_id": request.clever_district_id,
                "allowed": caller.district_id,
                "clever_user_id": request.clever_user_id,
                "email": request.email,
                "reference": new_reference(),
                "clever_role": request.clever_role.value,
                "email_digest": email_digest(request.email, pepper),
                "caller": caller.name,
            },
            rows=asyncio.get_running_loop().create_future(),
        )
        self._queue.put_nowait(waiting)
        rows = await waiting.rows
        recorded = rows[0][-1] if rows else None
        facts = _facts([row[:-1] for row in rows], request.clever_user_id)
        decision = decide(request, facts)
        district_id = facts.district_id
        if recorded is not None and decision.ok and decision.matched_by is MatchedBy.CLEVER_ID:
            reference: str = recorded
        else:
            async with self.pool.connection() as conn:
                if recorded is not None:
                    # the SQL fast path and the rules disagree: the rules win, the record follows them
                    _log.error("resolve: speculative rule-1 record contradicted by the rules; replaced")
                    await conn.execute(DELETE_ATTEMPT, {"reference": recorded})
                if decision.bind:
                    try:
                        decision, reference = await self._bind_and_record(
                            conn,
                            request=request,
                            decision=decision,
                            facts=facts,
                            caller=caller,
                            pepper=pepper,
                        )
                    except psycopg.errors.UniqueViolation:
                        decision = race_decision(decision)
                        reference = await self._record(conn, request, decision, district_id, caller, pepper)
                else:
                    reference = await self._record(conn, request, decision, district_id, caller, pepper)
        result = None
        if decision.ok:
            assert district_id is not None
            result = build_result(
                request=request, decision=decision, district_id=district_id, reference=reference
            )
        return Outcome(decision=decision, reference=reference, district_id=district_id, result=result)

    async def _bind_and_record(
        self,
        conn: psycopg.AsyncConnection[Any],
        *,
        request: ResolveRequest,
        decision: Decision,
        facts: Facts,
        caller: Caller,
        pepper: str,
    ) -> tuple[Decision, str]:
        assert decision.person is not None
        assert facts.district_id is not None
        keys = {"district_id": facts.district_id, "person_id": decision.person.person_id}
        async with conn.transaction():
            # a binding changes who owns an account: durable before the answer, like any roster write
            await conn.execute("SET LOCAL synchronous_commit = on")
            now = utcnow()
            cursor = await conn.execute(BIND, {**keys, "clever_user_id": request.clever_user_id, "now": now})
            bound = cursor.rowcount == 1
            if not bound:
                row = await (await conn.execute(CURRENT_CLEVER_ID, keys)).fetchone()
                if row is None or row[0] != request.clever_user_id:
                    decision = race_decision(decision)
            reference = await self._record(conn, request, decision, facts.district_id, caller, pepper)
            if bound:
                details = {
                    "method": "email_fallback",
                    "clever_user_id": request.clever_user_id,
                    "clever_role": request.clever_role.value,
                    "product": request.product.value,
                    "reference": reference,
                }
                await conn.execute(
                    INSERT_AUDIT,
                    {
                        "now": now,
                        "actor": caller.name,
                        "district_id": facts.district_id,
                        "target": keys["person_id"],
                        "details": Json(details),
                    },
                )
        return decision, reference

    async def _record(
        self,
        conn: psycopg.AsyncConnection[Any],
        request: ResolveRequest,
        decision: Decision,
        district_id: str | None,
        caller: Caller,
        pepper: str,
    ) -> str:
        person = decision.person
        params: dict[str, Any] = {
            "created_at": utcnow(),
            "product": request.product.value,
            "district_id": district_id,
            "clever_district_id": request.clever_district_id,
            "clever_user_id": request.clever_user_id,
            "clever_role": request.clever_role.value,
            "email_digest": email_digest(request.email, pepper),
            "outcome": "success" if decision.ok else "failure",
            "reason": decision.reason.value if decision.reason else None,
            "matched_by": decision.matched_by.value if decision.matched_by else None,
            "account_id": person.account_id if person and decision.ok else None,
            "person_id": person.person_id if person else None,
            "caller": caller.name,
            "rule": decision.rule,
            "diagnosis": decision.diagnosis[:1000],
            "roster": None if decision.roster is None else Json(decision.roster),
        }
        while True:
            params["reference"] = new_reference()
            cursor = await conn.execute(INSERT_ATTEMPT, params)
            if cursor.rowcount == 1:
                return str(params["reference"])
