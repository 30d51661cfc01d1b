"""The one resolve flow: gather what the roster holds, let `rules.decide` judge, bind the Clever ID when a
fallback rule matched, record the attempt. It runs over a `ResolveStore`: `service.SqlStore`
(SQLAlchemy: SQLite, and PostgreSQL in tests) or `pg.PgStore` (async psycopg on PostgreSQL, with a
fast path that records a plain rule-1 success in the same statement that gathers the facts).

The rules live in `rules.py` only. A store may speculate (the fast path), but the flow checks every
speculative record against `decide` and replaces it when they disagree, so the rules win."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from roster_api.accounts.rules import Candidate, Decision, Facts, decide, email_digest
from roster_api.errors import RosterError
from roster_shared.contracts import MatchedBy, ResolveReason, ResolveRequest, ResolveResult, RosterRole
from roster_shared.errors import ErrorCode

_log = logging.getLogger("roster_api.resolve")
T = TypeVar("T")


@dataclass(frozen=True)
class Caller:
    """Who asks: the API key's name (audit, diagnostics) and the district it is bound to, if any: a
    district-bound key resolves in its own district only."""

    name: str
    district_id: str | None


@dataclass(frozen=True)
class Outcome:
    decision: Decision
    reference: str
    district_id: str | None
    result: ResolveResult | None


@dataclass(frozen=True)
class Gathered:
    """The facts, and the reference of the attempt the store already recorded as a rule-1 success if it
    speculated (None otherwise)."""

    facts: Facts
    recorded: str | None = None


class BindState(StrEnum):
    BOUND = "bound"  # this login bound the Clever ID
    ALREADY = "already"  # a concurrent login bound the same Clever ID to the same person
    CONFLICT = "conflict"  # the person got another Clever ID meanwhile


class BindingRace(Exception):
    """The Clever ID went to another person between the read and the write (a unique violation). The
    store's unit of work is rolled back; the flow records the attempt in a new one."""


class ResolveUnit(Protocol):
    """One unit of work: everything done through it commits together when the `async with` ends, or
    not at all when it raises."""

    async def gather(self, request: ResolveRequest, caller: Caller, digest: str | None) -> Gathered: ...

    async def discard(self, reference: str) -> None: ...

    async def bind(self, district_id: str, person_id: str, clever_user_id: str) -> BindState: ...

    async def school_ids(self, district_id: str, person: Candidate) -> tuple[str, ...]: ...

    async def record(self, attempt: dict[str, Any]) -> str: ...

    async def audit_binding(
        self, *, actor: str, district_id: str, person_id: str, details: dict[str, Any]
    ) -> None: ...


class ResolveStore(Protocol):
    # errors meaning "the database is unreachable": the flow tries once more, then answers 503
    unavailable: tuple[type[Exception], ...]

    async def run(self, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Runs one whole resolve: on the event loop (async store), or in one worker thread (blocking)."""
        ...

    def unit(self) -> AbstractAsyncContextManager[ResolveUnit]: ...


class DatabaseUnavailable(RosterError):
    status_code = 503
    code = ErrorCode.SERVICE_UNAVAILABLE


RACE_DIAGNOSIS = (
    "The roster matched this login to a person without a Clever ID, but while this login bound the "
    "Clever ID, another login or a roster import gave that person or this Clever ID another binding. "
    "Trying again resolves it by Clever ID or explains the new conflict."
)


def race_decision(decision: Decision) -> Decision:
    return Decision(
        reason=ResolveReason.CLEVER_ID_CONFLICT,
        rule=decision.rule,
        diagnosis=RACE_DIAGNOSIS,
        person=decision.person,
        roster=decision.roster,
    )


def attempt_row(
    *,
    request: ResolveRequest,
    decision: Decision,
    district_id: str | None,
    caller: Caller,
    digest: str | None,
) -> dict[str, Any]:
    """The login_attempt columns (all but `reference` and `created_at`), the same for every store."""
    person = decision.person
    return {
        "product": request.product.value,
        "district_id": district_id,
        "clever_district_id": request.clever_district_id,
        "clever_user_id": request.clever_user_id,
        "clever_role": request.clever_role.value,
        "email_digest": digest,
        "outcome": "success" if decision.ok else "failure",
        "reason": decision.reason.value if decision.reason else None,
        "matched_by": decision.matched_by.value if decision.matched_by else None,
        "account_id": person.account_id if person and decision.ok else None,
        "person_id": person.person_id if person else None,
        "caller": caller.name,
        "rule": decision.rule,
        "diagnosis": decision.diagnosis[:1000],
        "roster": decision.roster,
    }


def build_result(
    *, request: ResolveRequest, decision: Decision, district_id: str, reference: str
) -> ResolveResult:
    person = decision.person
    assert person is not None
    assert person.account_id is not None
    assert decision.matched_by is not None
    return ResolveResult(
        account_id=person.account_id,
        product=request.product,
        role=RosterRole(person.role),
        district_id=district_id,
        display_name=f"{person.first_name} {person.last_name}".strip(),
        school_ids=list(person.school_ids or ()),
        matched_by=decision.matched_by,
        reference=reference,
    )


def _speculation_holds(decision: Decision) -> bool:
    return decision.ok and decision.matched_by is MatchedBy.CLEVER_ID


async def _bind(
    unit: ResolveUnit, request: ResolveRequest, decision: Decision, district_id: str
) -> tuple[Decision, bool]:
    assert decision.person is not None
    state = await unit.bind(district_id, decision.person.person_id, request.clever_user_id)
    if state is BindState.CONFLICT:
        return race_decision(decision), False
    return decision, state is BindState.BOUND


def _binding_details(request: ResolveRequest, decision: Decision, reference: str) -> dict[str, Any]:
    method = "sis_id_fallback" if decision.matched_by is MatchedBy.SIS_ID else "email_fallback"
    return {
        "method": method,
        "clever_user_id": request.clever_user_id,
        "clever_role": request.clever_role.value,
        "product": request.product.value,
        "reference": reference,
    }


async def _settle(
    unit: ResolveUnit, request: ResolveRequest, caller: Caller, digest: str | None, facts: Facts
) -> tuple[Decision, str]:
    """Everything after the facts, in the caller's unit: bind, complete the match, record, audit."""
    decision = decide(request, facts)
    district_id = facts.district_id
    bound = False
    if decision.bind:
        assert district_id is not None
        decision, bound = await _bind(unit, request, decision, district_id)
    person = decision.person
    if decision.ok and person is not None and person.school_ids is None:
        assert district_id is not None
        decision = replace(
            decision, person=replace(person, school_ids=await unit.school_ids(district_id, person))
        )
    row = attempt_row(
        request=request, decision=decision, district_id=district_id, caller=caller, digest=digest
    )
    reference = await unit.record(row)
    if bound:
        assert district_id is not None
        assert person is not None
        await unit.audit_binding(
            actor=caller.name,
            district_id=district_id,
            person_id=person.person_id,
            details=_binding_details(request, decision, reference),
        )
    return decision, reference


async def resolve(*, store: ResolveStore, request: ResolveRequest, caller: Caller, pepper: str) -> Outcome:
    """Resolve one Clever login: the lookup, the binding with its audit event and the attempt commit
    together; every call records exactly one attempt. One retry: a pooled connection may have been cut
    (database restart, failover)."""
    digest = email_digest(request.email, pepper)
    for attempt in (1, 2):
        try:
            return await store.run(lambda: _resolve(store, request, caller, digest))
        except store.unavailable as exc:
            _log.warning("resolve: database error %s (try %d)", type(exc).__name__, attempt)
            if attempt == 2:
                raise DatabaseUnavailable("The roster database is unavailable; try again.") from exc
    raise AssertionError("unreachable")


async def _resolve(
    store: ResolveStore, request: ResolveRequest, caller: Caller, digest: str | None
) -> Outcome:
    facts = Facts(district_id=None)
    try:
        async with store.unit() as unit:
            gathered = await unit.gather(request, caller, digest)
            facts = gathered.facts
            if gathered.recorded is not None:
                decision = decide(request, facts)
                if _speculation_holds(decision):
                    return _outcome(request, decision, facts.district_id, gathered.recorded)
                # the SQL fast path and the rules disagree: the rules win, the record follows them
                _log.error("resolve: speculative rule-1 record contradicted by the rules; replaced")
                await unit.discard(gathered.recorded)
            decision, reference = await _settle(unit, request, caller, digest, facts)
    except BindingRace:
        decision = race_decision(decide(request, facts))
        async with store.unit() as unit:
            row = attempt_row(
                request=request,
                decision=decision,
                district_id=facts.district_id,
                caller=caller,
                digest=digest,
            )
            reference = await unit.record(row)
    return _outcome(request, decision, facts.district_id, reference)


def _outcome(request: ResolveRequest, decision: Decision, district_id: str | None, reference: str) -> Outcome:
    result = None
    if decision.ok:
        assert district_id is not None
        result = build_result(
            request=request, decision=decision, district_id=district_id, reference=reference
        )
    return Outcome(decision=decision, reference=reference, district_id=district_id, result=result)
