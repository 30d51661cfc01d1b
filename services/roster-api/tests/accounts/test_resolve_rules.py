"""One rule table, run through `flow.resolve` on every store: SQLAlchemy on SQLite, SQLAlchemy on
PostgreSQL, and the psycopg store (batched fast path) on PostgreSQL. Each row checks the decision, the
one attempt recorded for it, and for a fallback match the binding and its audit event. Then the fast
path's safety net: a speculative rule-1 record that the rules contradict is replaced."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from roster_api.accounts import flow
from roster_api.accounts.flow import Caller, ResolveStore
from roster_api.accounts.rules import Decision, decide
from roster_api.models import Account, AuditEvent, LoginAttempt, Person
from roster_shared.contracts import ResolveReason, ResolveRequest

D1, D2, D3, UNLINKED = "d1" * 12, "d2" * 12, "d3" * 12, "ee" * 12


def cid(n: int) -> str:
    return f"{n:024x}"


def insert_people(engine: sa.Engine, spec: dict[str, tuple[str, str, dict[str, Any]]]) -> dict[str, str]:
    """All of them in one transaction (a person per transaction made this file slow): name -> id."""
    ids: dict[str, str] = {}
    with Session(engine) as s, s.begin():
        for n, (name, (district_id, role, fields)) in enumerate(spec.items()):
            ids[name] = person_id = f"p_{n:04d}"
            products = fields.pop("products", ("rocketlit",))
            account_active = fields.pop("account_active", True)
            source = "roster" if fields.get("clever_id") else None
            s.add(Person(district_id=district_id, id=person_id, role=role, clever_id_source=source, **fields))
            s.flush()
            for product in products:
                s.add(
                    Account(
                        district_id=district_id,
                        person_id=person_id,
                        product=product,
                        account_id=f"acct_{n:04d}_{product}",
                        active=account_active,
                    )
                )
    return ids


@pytest.fixture
def people(roster: Any, roster_engine: sa.Engine) -> dict[str, str]:
    """Everyone the table needs, in one roster. Names map to person ids."""
    roster.district("d1", clever_district_id=D1)
    roster.district("d2", clever_district_id=D2)
    roster.district("d3", clever_district_id=D3, licenses={})
    roster.school("d1", "s1")
    roster.section("d1", "c1", "s1")
    student, teacher = "student", "teacher"
    ids = insert_people(
        roster_engine,
        {
            "student": ("d1", student, {"clever_id": cid(1), "email": "s1@d1.org"}),
            "teacher": ("d1", teacher, {"clever_id": cid(2)}),
            "inactive": ("d1", student, {"clever_id": cid(3), "active": False}),
            "account_off": ("d1", student, {"clever_id": cid(4), "account_active": False}),
            "no_account": ("d1", student, {"clever_id": cid(5), "products": ()}),
            "email_only": ("d1", student, {"email": "e1@d1.org"}),
            "dup_a": ("d1", student, {"email": "dup@d1.org"}),
            "dup_b": ("d1", student, {"email": "dup@d1.org"}),
            "email_taken": ("d1", student, {"email": "taken@d1.org", "clever_id": cid(6)}),
            "sis_student": ("d1", student, {"sis_id": "S-100"}),
            "sis_teacher": ("d1", teacher, {"sis_id": "T-200"}),
            "sis_teacher_2": ("d1", teacher, {"sis_id": "T-201"}),
            "sis_dup_a": ("d1", student, {"sis_id": "S-DUP"}),
            "sis_dup_b": ("d1", student, {"sis_id": "S-DUP"}),
            "sis_bound": ("d1", student, {"clever_id": cid(7), "sis_id": "S-BOUND"}),
            "sis_inactive": ("d1", student, {"active": False, "sis_id": "S-INACT"}),
            "sis_over_email": ("d1", student, {"email": "e300@d1.org", "sis_id": "S-300"}),
            "email_not_sis": ("d1", student, {"email": "other300@d1.org"}),
            "teacher_sis_500": ("d1", teacher, {"sis_id": "S-500"}),
            "other_district": ("d2", student, {"sis_id": "S-X"}),
        },
    )
    roster.enroll("d1", "c1", ids["student"])
    return ids


@dataclass(frozen=True)
class Row:
    name: str
    request: dict[str, Any]
    reason: ResolveReason | None
    rule: str
    matched: str | None = None  # the person (by name) the attempt names
    binds: bool = False


OK = None
TABLE = [
    Row("rule 1", {"clever_user_id": cid(1)}, OK, "clever_id", "student"),
    Row("rule 1 beats a sis_id", {"clever_user_id": cid(1), "sis_id": "S-100"}, OK, "clever_id", "student"),
    Row(
        "staff fits a teacher", {"clever_user_id": cid(2), "clever_role": "staff"}, OK, "clever_id", "teacher"
    ),
    Row(
        "role mismatch",
        {"clever_user_id": cid(1), "clever_role": "teacher"},
        ResolveReason.ROLE_MISMATCH,
        "role",
    ),
    Row("inactive person", {"clever_user_id": cid(3)}, ResolveReason.INACTIVE_ACCOUNT, "active", "inactive"),
    Row("inactive account", {"clever_user_id": cid(4)}, ResolveReason.INACTIVE_ACCOUNT, "account"),
    Row("no account", {"clever_user_id": cid(5)}, ResolveReason.NO_ACCOUNT, "account", "no_account"),
    Row("not linked", {"clever_district_id": UNLINKED}, ResolveReason.DISTRICT_NOT_LINKED, "district"),
    Row("not licensed", {"clever_district_id": D3}, ResolveReason.PRODUCT_NOT_LICENSED, "license"),
    Row("unknown, no email", {"clever_user_id": cid(40)}, ResolveReason.NO_ACCOUNT, "clever_id"),
    Row("email binds", {"clever_user_id": cid(50), "email": "E1@d1.org"}, OK, "email", "email_only", True),
    Row(
        "email ambiguous",
        {"clever_user_id": cid(51), "email": "dup@d1.org"},
        ResolveReason.AMBIGUOUS_EMAIL,
        "email",
    ),
    Row(
        "email of a bound person",
        {"clever_user_id": cid(52), "email": "taken@d1.org"},
        ResolveReason.CLEVER_ID_CONFLICT,
        "email",
        "email_taken",
    ),
    Row("sis_id binds", {"clever_user_id": cid(53), "sis_id": " S-100 "}, OK, "sis_id", "sis_student", True),
    Row(
        "sis_id binds a teacher",
        {"clever_user_id": cid(54), "clever_role": "teacher", "sis_id": "T-200"},
        OK,
        "sis_id",
        "sis_teacher",
        True,
    ),
    Row(
        "sis_id ambiguous",
        {"clever_user_id": cid(55), "sis_id": "S-DUP"},
        ResolveReason.AMBIGUOUS_SIS_ID,
        "sis_id",
    ),
    Row(
        "sis_id of a bound person",
        {"clever_user_id": cid(56), "sis_id": "S-BOUND"},
        ResolveReason.CLEVER_ID_CONFLICT,
        "sis_id",
        "sis_bound",
    ),
    Row(
        "sis_id of an inactive person",
        {"clever_user_id": cid(57), "sis_id": "S-INACT"},
        ResolveReason.INACTIVE_ACCOUNT,
        "active",
        "sis_inactive",
    ),
    Row(
        "sis_id before email",
        {"clever_user_id": cid(58), "sis_id": "S-300", "email": "other300@d1.org"},
        OK,
        "sis_id",
        "sis_over_email",
        True,
    ),
    Row(
        "sis_id within the role",
        {"clever_user_id": cid(59), "sis_id": "S-500"},
        ResolveReason.NO_ACCOUNT,
        "clever_id",
    ),
    Row(
        "no sis_id for staff",
        {"clever_user_id": cid(60), "clever_role": "staff", "sis_id": "T-201"},
        ResolveReason.NO_ACCOUNT,
        "clever_id",
    ),
    Row(
        "sis_id within the district",
        {"clever_user_id": cid(61), "sis_id": "S-X"},
        ResolveReason.NO_ACCOUNT,
        "clever_id",
    ),
    # after the bindings above: the Clever ID now matches by rule 1, another Clever ID conflicts
    Row("bound by sis_id, then rule 1", {"clever_user_id": cid(53)}, OK, "clever_id", "sis_student"),
    Row(
        "bound by sis_id, another Clever ID",
        {"clever_user_id": cid(62), "sis_id": "S-100"},
        ResolveReason.CLEVER_ID_CONFLICT,
        "sis_id",
        "sis_student",
    ),
]


@pytest.fixture(params=["sqlalchemy", "psycopg"])
async def store(
    request: pytest.FixtureRequest, roster_engine: sa.Engine, database_url: str
) -> AsyncIterator[ResolveStore]:
    from roster_api.accounts.pg import PgStore
    from roster_api.accounts.service import SqlStore

    if request.param == "sqlalchemy":
        yield SqlStore(roster_engine)
        return
    if database_url.startswith("sqlite"):
        pytest.skip("the psycopg store is PostgreSQL only")
    pg = PgStore(database_url, min_size=1, max_size=4)
    await pg.open()
    try:
        yield pg
    finally:
        await pg.close()


def body(**fields: Any) -> ResolveRequest:
    return ResolveRequest.model_validate(
        {
            "product": "rocketlit",
            "clever_user_id": cid(1),
            "clever_district_id": D1,
            "clever_role": "student",
            **fields,
        }
    )


def counts(engine: sa.Engine) -> tuple[int, int]:
    with Session(engine) as s:
        attempts = s.exec(select(func.count()).select_from(LoginAttempt)).one()
        audits = s.exec(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "person.clever_id_bound")
        ).one()
    return attempts, audits


def check_row(row: Row, outcome: flow.Outcome, engine: sa.Engine, people: dict[str, str]) -> None:
    decision = outcome.decision
    assert (decision.reason, decision.rule) == (row.reason, row.rule), (row.name, decision.diagnosis)
    with Session(engine) as s:
        attempt = s.get(LoginAttempt, outcome.reference)
        assert attempt is not None
        assert attempt.outcome == ("success" if row.reason is None else "failure")
        assert attempt.reason == (row.reason.value if row.reason else None)
        assert attempt.rule == row.rule
        assert attempt.diagnosis == decision.diagnosis
        if row.matched is not None:
            assert attempt.person_id == people[row.matched], row.name
        if row.reason is None:
            assert outcome.result is not None
            assert attempt.matched_by == outcome.result.matched_by == row.rule
            assert attempt.account_id == outcome.result.account_id
        if row.binds:
            person = s.get(Person, ("d1", people[str(row.matched)]))
            assert person is not None
            assert (person.clever_id, person.clever_id_source) == (row.request["clever_user_id"], "login")
            audit = s.exec(select(AuditEvent).where(AuditEvent.target == person.id)).one()
            method = "sis_id_fallback" if row.rule == "sis_id" else "email_fallback"
            assert audit.details["method"] == method
            assert audit.details["reference"] == outcome.reference


async def test_the_rule_table_on_every_store(
    store: ResolveStore, people: dict[str, str], roster_engine: sa.Engine
) -> None:
    caller = Caller(name="sso-gateway", district_id=None)
    for row in TABLE:
        attempts, audits = counts(roster_engine)
        outcome = await flow.resolve(store=store, request=body(**row.request), caller=caller, pepper="p")
        check_row(row, outcome, roster_engine, people)
        # exactly one attempt per resolve (a speculative record never survives next to another)
        assert counts(roster_engine) == (attempts + 1, audits + int(row.binds)), row.name
    with Session(roster_engine) as s:
        student = s.exec(select(LoginAttempt).where(LoginAttempt.person_id == people["student"])).first()
    assert student is not None


async def test_a_fast_path_record_the_rules_contradict_is_replaced(
    store: ResolveStore, people: dict[str, str], roster_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were the SQL fast path's rule-1 test and `decide` to disagree, the rules win: the speculative
    success is deleted and the attempt recorded is the rules' failure."""
    real = decide

    def stricter(request: ResolveRequest, facts: Any) -> Decision:
        decision = real(request, facts)
        if decision.ok:
            return Decision(
                reason=ResolveReason.NO_ACCOUNT, rule="account", diagnosis="stricter", person=decision.person
            )
        return decision

    monkeypatch.setattr(flow, "decide", stricter)
    outcome = await flow.resolve(
        store=store, request=body(), caller=Caller(name="gw", district_id=None), pepper="p"
    )
    assert outcome.result is None
    assert outcome.decision.reason is ResolveReason.NO_ACCOUNT
    with Session(roster_engine) as s:
        rows = s.exec(select(LoginAttempt)).all()
    assert [(r.reference, r.outcome, r.diagnosis) for r in rows] == [
        (outcome.reference, "failure", "stricter")
    ]


def test_a_sis_id_login_over_http_and_its_diagnosis(
    client: TestClient, people: dict[str, str], make_key: Callable[..., str]
) -> None:
    resolve_key = {"Authorization": f"Bearer {make_key('resolve', name='sso-gateway')}"}
    read_key = {"Authorization": f"Bearer {make_key('roster:read')}"}
    request = body(clever_user_id=cid(70), sis_id="S-100", email="nobody@d1.org").model_dump(mode="json")
    response = client.post("/v1/resolve", json=request, headers=resolve_key)
    assert response.status_code == 200, response.text
    assert response.json()["matched_by"] == "sis_id"
    attempt = client.get(f"/v1/login-attempts/{response.json()['reference']}", headers=read_key).json()
    assert (attempt["rule"], attempt["matched_by"]) == ("sis_id", "sis_id")
    assert "district's own id" in attempt["diagnosis"]
    assert attempt["roster_now"]["clever_id_match"]["person_id"] == people["sis_student"]
    # two people with one sis_id: refused with the reason and a reference
    request = body(clever_user_id=cid(71), sis_id="S-DUP").model_dump(mode="json")
    response = client.post("/v1/resolve", json=request, headers=resolve_key)
    assert response.status_code == 422
    detail = response.json()["error"]["details"][0]
    assert response.json()["error"]["code"] == "AMBIGUOUS_SIS_ID"
    attempt = client.get(f"/v1/login-attempts/{detail['reference']}", headers=read_key).json()
    assert len(attempt["roster"]["sis_id_matches"]) == 2
    assert "share the district id" in attempt["diagnosis"]


def test_a_malformed_sis_id_is_a_validation_error(client: TestClient, make_key: Callable[..., str]) -> None:
    headers = {"Authorization": f"Bearer {make_key('resolve')}"}
    for sis_id in ["x" * 256, 12]:
        request = {**body().model_dump(mode="json"), "sis_id": sis_id}
        response = client.post("/v1/resolve", json=request, headers=headers)
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "VALIDATION_ERROR"


def test_a_blank_sis_id_is_no_sis_id() -> None:
    assert body(sis_id="   ").sis_id is None
    assert "sis_id" not in body().model_dump(mode="json", exclude_none=True)
