"""The resolve store on SQLAlchemy (SQLite; PostgreSQL too, though production uses `pg.PgStore` there)
and the login-attempt queries support uses. The flow is in `flow.py`, the rules in `rules.py`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from anyio import to_thread
from sqlmodel import Session, col, func, select

from roster_api import audit
from roster_api.accounts.attempts import AttemptWriter
from roster_api.accounts.flow import BindingRace, BindState, Caller, Gathered
from roster_api.accounts.rules import (
    MAX_EMAIL_CANDIDATES,
    Candidate,
    Facts,
    new_reference,
    sis_id_role,
)
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
from roster_shared.contracts import Product, ResolveRequest

T = TypeVar("T")


# The lookups of a resolve as statements built once, on the tables (Core): a resolve on SQLite runs them
# on every login, and building ORM queries and loading ORM objects for them cost several times the
# queries themselves. What they read is what the ORM queries read.
_district: sa.Table = District.__table__  # type: ignore[attr-defined]
_license: sa.Table = License.__table__  # type: ignore[attr-defined]
_person: sa.Table = Person.__table__  # type: ignore[attr-defined]
_account: sa.Table = Account.__table__  # type: ignore[attr-defined]
_section: sa.Table = Section.__table__  # type: ignore[attr-defined]

_DISTRICT = sa.select(_district.c.id).where(
    _district.c.clever_district_id == sa.bindparam("clever_district_id")
)
_DISTRICT_OF_CALLER = _DISTRICT.where(_district.c.id == sa.bindparam("allowed"))
_LICENSED = sa.select(sa.literal(1)).where(
    _license.c.district_id == sa.bindparam("district_id"), _license.c.product == sa.bindparam("product")
)
_PERSON_COLUMNS = (
    _person.c.id,
    _person.c.role,
    _person.c.clever_id,
    _person.c.clever_id_source,
    _person.c.active,
    _person.c.first_name,
    _person.c.last_name,
)
_BY_CLEVER_ID = sa.select(*_PERSON_COLUMNS).where(
    _person.c.district_id == sa.bindparam("district_id"),
    _person.c.clever_id == sa.bindparam("clever_user_id"),
)
_NOT_THIS_ID = sa.or_(_person.c.clever_id.is_(None), _person.c.clever_id != sa.bindparam("clever_user_id"))
_BY_SIS_ID = (
    sa.select(*_PERSON_COLUMNS)
    .where(
        _person.c.district_id == sa.bindparam("district_id"),
        _person.c.role == sa.bindparam("role"),
        _person.c.sis_id == sa.bindparam("sis_id"),
        _NOT_THIS_ID,
    )
    .order_by(_person.c.id)
    .limit(MAX_EMAIL_CANDIDATES)
)
_BY_EMAIL = (
    sa.select(*_PERSON_COLUMNS)
    .where(
        _person.c.district_id == sa.bindparam("district_id"),
        _person.c.email == sa.bindparam("email"),
        _NOT_THIS_ID,
    )
    .order_by(_person.c.id)
    .limit(MAX_EMAIL_CANDIDATES)
)
_ACCOUNT = sa.select(_account.c.account_id, _account.c.active).where(
    _account.c.district_id == sa.bindparam("district_id"),
    _account.c.person_id == sa.bindparam("person_id"),
    _account.c.product == sa.bindparam("product"),
)


def _school_ids_query(link: sa.Table) -> sa.Select[Any]:
    return (
        sa.select(_section.c.school_id)
        .join(
            link,
            sa.and_(link.c.district_id == _section.c.district_id, link.c.class_id == _section.c.class_id),
        )
        .where(
            link.c.district_id == sa.bindparam("district_id"),
            link.c.person_id == sa.bindparam("person_id"),
            link.c.active.is_(True),
            _section.c.active.is_(True),
        )
        .distinct()
        .order_by(_section.c.school_id)
    )


_SCHOOLS_OF_TEACHER = _school_ids_query(SectionTeacher.__table__)  # type: ignore[attr-defined]
_SCHOOLS_OF_STUDENT = _school_ids_query(Enrollment.__table__)  # type: ignore[attr-defined]


def _candidate(conn: sa.Connection, district_id: str, person: Any, product: Product) -> Candidate:
    """`person`: a row of `_PERSON_COLUMNS` or a `Person`."""
    account = conn.execute(
        _ACCOUNT, {"district_id": district_id, "person_id": person.id, "product": product.value}
    ).first()
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
    query = _SCHOOLS_OF_TEACHER if role == "teacher" else _SCHOOLS_OF_STUDENT
    rows = session.connection().execute(query, {"district_id": district_id, "person_id": person_id})
    return tuple(row[0] for row in rows)


def gather(*, session: Session, request: ResolveRequest, caller: Caller) -> Facts:
    conn = session.connection()
    keys: dict[str, Any] = {"clever_district_id": request.clever_district_id, "allowed": caller.district_id}
    district_id = conn.execute(
        _DISTRICT if caller.district_id is None else _DISTRICT_OF_CALLER, keys
    ).scalar()
    if district_id is None:
        return Facts(district_id=None)
    product = request.product
    licensed = (
        conn.execute(_LICENSED, {"district_id": district_id, "product": product.value}).first() is not None
    )
    keys = {"district_id": district_id, "clever_user_id": request.clever_user_id}
    person = conn.execute(_BY_CLEVER_ID, keys).first()
    sis_role = sis_id_role(request)
    by_sis_id: list[Any] = []
    if request.sis_id and sis_role is not None:
        by_sis_id = list(conn.execute(_BY_SIS_ID, {**keys, "role": sis_role.value, "sis_id": request.sis_id}))
    by_email: list[Any] = []
    if request.email:
        by_email = list(conn.execute(_BY_EMAIL, {**keys, "email": request.email}))
    return Facts(
        district_id=district_id,
        licensed=licensed,
        by_clever_id=_candidate(conn, district_id, person, product) if person else None,
        by_sis_id=tuple(_candidate(conn, district_id, p, product) for p in by_sis_id),
        by_email=tuple(_candidate(conn, district_id, p, product) for p in by_email),
    )


def bind_clever_id(*, session: Session, district_id: str, person_id: str, clever_user_id: str) -> BindState:
    """The fallback rules' binding. A unique violation (the ID went to someone else meanwhile) raises
    IntegrityError to the caller."""
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
        return BindState.BOUND
    current = session.exec(
        select(Person.clever_id).where(Person.district_id == district_id, Person.id == person_id)
    ).first()
    return BindState.ALREADY if current == clever_user_id else BindState.CONFLICT


def record_attempt(*, session: Session, attempt: dict[str, Any]) -> str:
    reference = unused_reference(session)
    session.add(LoginAttempt(reference=reference, **attempt))
    session.flush()
    return reference


_attempt: sa.Table = LoginAttempt.__table__  # type: ignore[attr-defined]
_REFERENCE_TAKEN = sa.select(sa.literal(1)).where(_attempt.c.reference == sa.bindparam("reference"))
_INSERT_ATTEMPT = sa.insert(_attempt)


def unused_reference(session: Session) -> str:
    conn = session.connection()
    reference = new_reference()
    while conn.execute(_REFERENCE_TAKEN, {"reference": reference}).first() is not None:
        reference = new_reference()
    return reference


def _insert_attempt(session: Session, row: dict[str, Any]) -> None:
    """A complete login_attempt row (every column), as a Core insert: the ORM's unit of work for one
    row cost more than the insert on SQLite, where every login writes one."""
    session.connection().execute(_INSERT_ATTEMPT, row)


# how long a resolve on SQLite waits for the write lock to record its attempt before it hands the
# attempt to the background writer (an import holds the lock while it applies)
RECORD_WAIT_MS = 100
BUSY_TIMEOUT_MS = 30_000  # db.py's busy_timeout, restored after the short wait


class SqlUnit:
    """A `flow.ResolveUnit` over one SQLAlchemy session. Its steps block: `SqlStore.run` drives the
    whole flow in one worker thread, so a resolve costs one thread hop, as a sync route would.

    On SQLite the lookup runs in a read transaction (WAL: it never waits for a writer, and its
    lookups see one snapshot). Only a binding takes the write lock (`BEGIN IMMEDIATE`, then the
    conditional update; the attempt and audit event commit with it). A plain attempt is written in
    its own short transaction if the lock is free within `RECORD_WAIT_MS`, else by the writer."""

    def __init__(self, session: Session, *, sqlite: bool, writer: AttemptWriter | None = None) -> None:
        self.session = session
        self._sqlite = sqlite
        self._writer = writer
        self._writing = not sqlite

    def _begin(self, mode: str) -> None:
        self.session.connection().exec_driver_sql(f"BEGIN {mode}")

    def _lock(self) -> None:
        """Ends the read transaction and takes the write lock (waits up to the busy timeout)."""
        if not self._writing:
            self.session.commit()
            self._begin("IMMEDIATE")
            self._writing = True

    async def gather(self, request: ResolveRequest, caller: Caller, digest: str | None) -> Gathered:
        if self._sqlite:
            self._begin("DEFERRED")
        return Gathered(gather(session=self.session, request=request, caller=caller))

    async def discard(self, reference: str) -> None:
        raise AssertionError("SqlUnit never records speculatively")

    async def bind(self, district_id: str, person_id: str, clever_user_id: str) -> BindState:
        self._lock()
        try:
            return bind_clever_id(
                session=self.session,
                district_id=district_id,
                person_id=person_id,
                clever_user_id=clever_user_id,
            )
        except sa.exc.IntegrityError as exc:
            raise BindingRace from exc

    async def school_ids(self, district_id: str, person: Candidate) -> tuple[str, ...]:
        return school_ids(
            session=self.session, district_id=district_id, person_id=person.person_id, role=person.role
        )

    async def record(self, attempt: dict[str, Any]) -> str:
        if self._writing or self._writer is None:
            self._lock()
            return record_attempt(session=self.session, attempt=attempt)
        reference = unused_reference(self.session)
        row = {**attempt, "reference": reference, "created_at": utcnow()}
        if not self._record_now(row) and not self._writer.submit(row):
            self._lock()  # the queue is full: wait for the lock like a binding
            _insert_attempt(self.session, row)
        return reference

    def _record_now(self, row: dict[str, Any]) -> bool:
        """Writes the attempt if the write lock is free within `RECORD_WAIT_MS`."""
        self.session.commit()
        connection = self.session.connection()
        connection.exec_driver_sql(f"PRAGMA busy_timeout={RECORD_WAIT_MS}")
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            locked = True
        except sa.exc.OperationalError:
            locked = False
        connection.exec_driver_sql(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        if not locked:
            self.session.rollback()
            return False
        self._writing = True
        _insert_attempt(self.session, row)
        return True

    async def audit_binding(
        self, *, actor: str, district_id: str, person_id: str, details: dict[str, Any]
    ) -> None:
        audit.record(
            session=self.session,
            actor=actor,
            action="person.clever_id_bound",
            district_id=district_id,
            target=person_id,
            details=details,
        )


def _drive(coroutine: Coroutine[Any, Any, T]) -> T:
    """Runs a coroutine that never suspends (every await in it is a blocking SqlUnit step) to its end."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coroutine.close()
    raise RuntimeError("a SqlStore resolve suspended; its steps must block instead")


class SqlStore:
    """A `flow.ResolveStore` over SQLAlchemy: SQLite in production, either database in tests.

    With a started `AttemptWriter` (the app's lifespan on SQLite), a resolve never waits for the
    write lock unless it binds a Clever ID; `flush` makes the attempts handed to the writer readable.
    Without one, every attempt is written in the resolve's own transaction."""

    # an unreachable or locked database surfaces as OperationalError: 503 from the app's handler, no retry
    unavailable: tuple[type[Exception], ...] = ()

    def __init__(self, engine: sa.Engine, writer: AttemptWriter | None = None) -> None:
        self.engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        self.writer = writer if self._sqlite else None

    async def run(self, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
        return await to_thread.run_sync(_drive, work())

    @asynccontextmanager
    async def unit(self) -> AsyncIterator[SqlUnit]:
        with Session(self.engine, expire_on_commit=False) as session:  # closing rolls back if not committed
            yield SqlUnit(session, sqlite=self._sqlite, writer=self.writer)
            session.commit()

    def flush(self) -> None:
        """Blocks until the attempts handed to the background writer so far are written."""
        if self.writer is not None:
            self.writer.flush()


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
        "clever_id_match": _candidate(
            session.connection(), attempt.district_id, person, Product(attempt.product)
        ).snapshot(),
    }
