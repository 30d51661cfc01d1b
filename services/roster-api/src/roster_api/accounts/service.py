"""Resolve on SQLAlchemy (SQLite, and PostgreSQL when the async pool is off) and the login-attempt
queries support uses. The rules themselves are in `rules.py`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from roster_api import audit
from roster_api.accounts.rules import (
    MAX_EMAIL_CANDIDATES,
    Candidate,
    Decision,
    Facts,
    decide,
    email_digest,
    new_reference,
)
from roster_api.db import session_scope
from roster_api.models import (
    Account,
    District,
    Enrollment,
    License,
    LoginAttempt,
    Person,
    Section,
    SectionTeacher,
    utcnow,
)
from roster_shared.contracts import (
    Product,
    ResolveReason,
    ResolveRequest,
    ResolveResult,
    RosterRole,
)


@dataclass(frozen=True)
class Caller:
    """Who asks: the API key's name (audit, diagnostics) and the district it is bound to, if any (T2)."""

    name: str
    district_id: str | None


@dataclass(frozen=True)
class Outcome:
    decision: Decision
    reference: str
    district_id: str | None
    result: ResolveResult | None


RACE_DIAGNOSIS = (
    "The roster matched this email to a person without a Clever ID, but while this login bound the "
    "Clever ID, another login or a roster import gave that person or this Clever ID another binding. "
    "Trying again resolves it by Clever ID or explains the new conflict."
)


def race_decision(decision: Decision) -> Decision:
    return Decision(
        reason=ResolveReason.CLEVER_ID_CONFLICT,
        rule="email",
        diagnosis=RACE_DIAGNOSIS,
        person=decision.person,
        roster=decision.roster,
    )


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
        school_ids=list(person.school_ids),
        matched_by=decision.matched_by,
        reference=reference,
    )


def _candidate(session: Session, person: Person, product: Product) -> Candidate:
    account = session.get(Account, (person.district_id, person.id, product.value))
    return Candidate(
        person_id=person.id,
        role=person.role,
        clever_id=person.clever_id,
        clever_id_source=person.clever_id_source,
        active=person.active,
        first_name=person.first_name,
        last_name=person.last_name,
        account_id=account.account_id if account else None,
        account_active=account.active if account else None,
    )


def school_ids(*, session: Session, district_id: str, person_id: str, role: str) -> tuple[str, ...]:
    """A teacher's schools are those of their active classes; a student's, those of their active
    enrollments (in active classes)."""
    link: type[SectionTeacher] | type[Enrollment] = SectionTeacher if role == "teacher" else Enrollment
    query = (
        select(Section.school_id)
        .join(
            link,
            sa.and_(
                col(link.district_id) == col(Section.district_id),
                col(link.class_id) == col(Section.class_id),
            ),
        )
        .where(
            col(link.district_id) == district_id,
            col(link.person_id) == person_id,
            col(link.active).is_(True),
            col(Section.active).is_(True),
        )
        .distinct()
        .order_by(col(Section.school_id))
    )
    return tuple(session.exec(query).all())


def gather(*, session: Session, request: ResolveRequest, caller: Caller) -> Facts:
    query = select(District.id).where(District.clever_district_id == request.clever_district_id)
    if caller.district_id is not None:
        query = query.where(District.id == caller.district_id)
    district_id = session.exec(query).first()
    if district_id is None:
        return Facts(district_id=None)
    licensed = session.get(License, (district_id, request.product.value)) is not None
    person = session.exec(
        select(Person).where(Person.district_id == district_id, Person.clever_id == request.clever_user_id)
    ).first()
    by_email: list[Person] = []
    if request.email:
        by_email = list(
            session.exec(
                select(Person)
                .where(
                    Person.district_id == district_id,
                    Person.email == request.email,
                    sa.or_(col(Person.clever_id).is_(None), col(Person.clever_id) != request.clever_user_id),
                )
                .order_by(col(Person.id))
                .limit(MAX_EMAIL_CANDIDATES)
            ).all()
        )
    return Facts(
        district_id=district_id,
        licensed=licensed,
        by_clever_id=_candidate(session, person, request.product) if person else None,
        by_email=tuple(_candidate(session, p, request.product) for p in by_email),
    )


def bind_clever_id(*, session: Session, district_id: str, person_id: str, clever_user_id: str) -> str:
    """Rule 2's binding. Returns "bound", "already" (a concurrent login bound the same ID) or "conflict".
    A unique violation (the ID went to someone else meanwhile) raises IntegrityError to the caller."""
    result = session.execute(
        sa.update(Person)
        .where(
            col(Person.district_id) == district_id,
            col(Person.id) == person_id,
            col(Person.clever_id).is_(None),
        )
        .values(clever_id=clever_user_id, clever_id_source="login", updated_at=utcnow())
    )
    if getattr(result, "rowcount", 0) == 1:
        return "bound"
    current = session.exec(
        select(Person.clever_id).where(Person.district_id == district_id, Person.id == person_id)
    ).first()
    return "already" if current == clever_user_id else "conflict"


def record_attempt(
    *,
    session: Session,
    request: ResolveRequest,
    decision: Decision,
    district_id: str | None,
    caller: Caller,
    pepper: str,
) -> str:
    reference = new_reference()
    while session.get(LoginAttempt, reference) is not None:
        reference = new_reference()
    person = decision.person
    session.add(
        LoginAttempt(
            reference=reference,
            product=request.product.value,
            district_id=district_id,
            clever_district_id=request.clever_district_id,
            clever_user_id=request.clever_user_id,
            clever_role=request.clever_role.value,
            email_digest=email_digest(request.email, pepper),
            outcome="success" if decision.ok else "failure",
            reason=decision.reason.value if decision.reason else None,
            matched_by=decision.matched_by.value if decision.matched_by else None,
            account_id=person.account_id if person and decision.ok else None,
            person_id=person.person_id if person else None,
            caller=caller.name,
            rule=decision.rule,
            diagnosis=decision.diagnosis[:1000],
            roster=decision.roster,
        )
    )
    session.flush()
    return reference


def audit_binding(
    *,
    session: Session,
    caller: Caller,
    district_id: str,
    person_id: str,
    request: ResolveRequest,
    reference: str,
) -> None:
    audit.record(
        session=session,
        actor=caller.name,
        action="person.clever_id_bound",
        district_id=district_id,
        target=person_id,
        details={
            "method": "email_fallback",
            "clever_user_id": request.clever_user_id,
            "clever_role": request.clever_role.value,
            "product": request.product.value,
            "reference": reference,
        },
    )


def resolve(*, engine: sa.Engine, request: ResolveRequest, caller: Caller, pepper: str) -> Outcome:
    """The whole resolve in one transaction: the lookup, the binding with its audit event, the attempt."""
    try:
        with session_scope(engine) as session:
            if engine.dialect.name == "sqlite":
                # pysqlite runs each SELECT outside a transaction, so rule 1 and rule 2 could read the
                # roster before and after a concurrent binding (a lost login). Taking the write lock first
                # gives the whole resolve one snapshot; every resolve writes its attempt anyway.
                session.connection().exec_driver_sql("BEGIN IMMEDIATE")
            facts = gather(session=session, request=request, caller=caller)
            decision = decide(request, facts)
            district_id = facts.district_id
            bound = False
            if decision.bind:
                assert district_id is not None
                assert decision.person is not None
                state = bind_clever_id(
                    session=session,
                    district_id=district_id,
                    person_id=decision.person.person_id,
                    clever_user_id=request.clever_user_id,
                )
                if state == "conflict":
                    decision = race_decision(decision)
                bound = state == "bound"
            if decision.ok:
                assert district_id is not None
                assert decision.person is not None
                person = decision.person
                schools = school_ids(
                    session=session, district_id=district_id, person_id=person.person_id, role=person.role
                )
                decision = Decision(
                    reason=None,
                    rule=decision.rule,
                    diagnosis=decision.diagnosis,
                    person=Candidate(**{**person.__dict__, "school_ids": schools}),
                    matched_by=decision.matched_by,
                    bind=decision.bind,
                )
            reference = record_attempt(
                session=session,
                request=request,
                decision=decision,
                district_id=district_id,
                caller=caller,
                pepper=pepper,
            )
            if bound:
                assert district_id is not None
                assert decision.person is not None
                audit_binding(
                    session=session,
                    caller=caller,
                    district_id=district_id,
                    person_id=decision.person.person_id,
                    request=request,
                    reference=reference,
                )
    except sa.exc.IntegrityError:
        # the Clever ID was bound to someone else between our read and our write
        decision = race_decision(decision)
        with session_scope(engine) as session:
            reference = record_attempt(
                session=session,
                request=request,
                decision=decision,
                district_id=district_id,
                caller=caller,
                pepper=pepper,
            )
    result = None
    if decision.ok:
        assert district_id is not None
        result = build_result(
            request=request, decision=decision, district_id=district_id, reference=reference
        )
    return Outcome(decision=decision, reference=reference, district_id=district_id, result=result)


# --- diagnostics ----------------------------------------------------------------------------------


def list_attempts(
    *,
    session: Session,
    district_id: str,
    outcome: str | None,
    reason: str | None,
    since: datetime | None,
    until: datetime | None,
    clever_user_id: str | None,
    digest: str | None,
    limit: int,
    offset: int,
) -> tuple[list[LoginAttempt], int]:
    conditions: list[Any] = [LoginAttempt.district_id == district_id]
    if outcome is not None:
        conditions.append(LoginAttempt.outcome == outcome)
    if reason is not None:
        conditions.append(LoginAttempt.reason == reason)
    if since is not None:
        conditions.append(col(LoginAttempt.created_at) >= since)
    if until is not None:
        conditions.append(col(LoginAttempt.created_at) < until)
    if clever_user_id is not None:
        conditions.append(LoginAttempt.clever_user_id == clever_user_id)
    if digest is not None:
        conditions.append(LoginAttempt.email_digest == digest)
    total = session.exec(select(func.count()).select_from(LoginAttempt).where(*conditions)).one()
    rows = session.exec(
        select(LoginAttempt)
        .where(*conditions)
        .order_by(col(LoginAttempt.created_at).desc(), col(LoginAttempt.reference).desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), total


def get_attempt(*, session: Session, reference: str) -> LoginAttempt | None:
    return session.get(LoginAttempt, reference)


def roster_now(*, session: Session, attempt: LoginAttempt) -> dict[str, Any] | None:
    """What the roster holds for the attempt's Clever ID today, so support sees whether a re-import or a
    binding since then changed the answer."""
    if attempt.district_id is None:
        return None
    person = session.exec(
        select(Person).where(
            Person.district_id == attempt.district_id, Person.clever_id == attempt.clever_user_id
        )
    ).first()
    licensed = session.get(License, (attempt.district_id, attempt.product)) is not None
    if person is None:
        return {"licensed": licensed, "clever_id_match": None}
    return {
        "licensed": licensed,
        "clever_id_match": _candidate(session, person, Product(attempt.product)).snapshot(),
    }
