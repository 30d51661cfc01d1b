"""POST /v1/resolve: the rules of docs/design.md ("Resolving a Clever login") and the resolve checks of
docs/security.md, on SQLite and PostgreSQL (the PostgreSQL run goes through the async psycopg store,
SQLite through SQLAlchemy)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from roster_api.models import AuditEvent, LoginAttempt, Person
from roster_shared.contracts import ResolveReason

D1 = "d1" * 12  # Clever district ids (24 hex)
D2 = "d2" * 12
UNLINKED = "ee" * 12
REFERENCE = re.compile(r"^LA-[2-9A-HJKMNP-TV-Z]{5}-[2-9A-HJKMNP-TV-Z]{5}$")


def cid(n: int) -> str:
    return f"{n:024x}"


@pytest.fixture
def world(roster: Any) -> dict[str, Any]:
    """d1 (RocketLit only) and d2 (RocketLit), a teacher and a student in d1 with Clever IDs."""
    roster.district("d1", clever_district_id=D1, licenses={"rocketlit": 100})
    roster.district("d2", clever_district_id=D2, licenses={"rocketlit": 100, "innerorbit": 10})
    roster.school("d1", "s1")
    roster.school("d1", "s2")
    roster.section("d1", "c1", "s1")
    roster.section("d1", "c2", "s2", active=False)
    teacher = roster.person("d1", "teacher", clever_id=cid(1), email="teach@d1.org", first="Tess", last="Ng")
    student = roster.person("d1", "student", clever_id=cid(2), email="stu@d1.org", first="Sam", last="Ito")
    roster.teach("d1", "c1", teacher.person_id)
    roster.enroll("d1", "c1", student.person_id)
    roster.enroll("d1", "c2", student.person_id)  # class inactive: s2 is not one of their schools
    return {"teacher": teacher, "student": student}


@pytest.fixture
def resolve_headers(make_key: Callable[..., str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key('resolve', name='sso-gateway')}"}


def call(client: TestClient, headers: dict[str, str], **fields: Any) -> Any:
    body = {
        "product": "rocketlit",
        "clever_user_id": cid(2),
        "clever_district_id": D1,
        "email": None,
        "clever_role": "student",
        **fields,
    }
    return client.post("/v1/resolve", json=body, headers=headers)


def failure(response: Any, reason: str) -> str:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == reason.upper()
    assert len(error["details"]) == 1
    detail = error["details"][0]
    assert detail["reason"] == reason
    assert REFERENCE.match(detail["reference"]), detail
    reference: str = detail["reference"]
    return reference


def attempt(engine: sa.Engine, reference: str) -> LoginAttempt:
    with Session(engine) as s:
        row = s.get(LoginAttempt, reference)
    assert row is not None
    return row


def person(engine: sa.Engine, person_id: str) -> Person:
    with Session(engine) as s:
        row = s.exec(select(Person).where(Person.id == person_id)).one()
    return row


# --- rule 1 ---------------------------------------------------------------------------------------


def test_rule1_clever_id_matches_whatever_the_email_says(
    client: TestClient, world: dict[str, Any], resolve_headers: dict[str, str], roster_engine: sa.Engine
) -> None:
    # the teacher's email: rule 1 wins anyway (L1)
    response = call(client, resolve_headers, email="teach@d1.org")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {
        "account_id": world["student"].accounts["rocketlit"],
        "product": "rocketlit",
        "role": "student",
        "district_id": "d1",
        "display_name": "Sam Ito",
        "school_ids": ["s1"],
        "matched_by": "clever_id",
        "reference": body["reference"],
    }
    assert REFERENCE.match(body["reference"])
    row = attempt(roster_engine, body["reference"])
    assert (row.outcome, row.reason, row.matched_by, row.rule) == ("success", None, "clever_id", "clever_id")
    assert row.person_id == world["student"].person_id
    assert row.account_id == body["account_id"]
    assert row.caller == "sso-gateway"
    assert row.clever_user_id == cid(2)
    assert row.email_digest is not None
    assert "teach@d1.org" not in row.email_digest


def test_upper_case_clever_ids_are_normalized(
    client: TestClient, world: dict[str, Any], resolve_headers: dict[str, str]
) -> None:
    response = call(client, resolve_headers, clever_user_id=cid(1).upper(), clever_role="teacher")
    assert response.status_code == 200, response.text
    assert response.json()["role"] == "teacher"


@pytest.mark.parametrize("role", ["teacher", "staff", "district_admin"])
def test_teacher_side_roles_match_a_rostered_teacher(
    client: TestClient, world: dict[str, Any], resolve_headers: dict[str, str], role: str
) -> None:
    response = call(client, resolve_headers, clever_user_id=cid(1), clever_role=role)
    assert response.status_code == 200, response.text
    assert response.json()["school_ids"] == ["s1"]
    assert response.json()["account_id"] == world["teacher"].accounts["rocketlit"]


@pytest.mark.parametrize(
    ("clever_user", "role"), [(2, "teacher"), (2, "staff"), (1, "student"), (1, "contact")]
)
def test_role_must_fit(
    client: TestClient,
    world: dict[str, Any],
    resolve_headers: dict[str, str],
    roster_engine: sa.Engine,
    clever_user: int,
    role: str,
) -> None:
    reference = failure(
        call(client, resolve_headers, clever_user_id=cid(clever_user), clever_role=role), "role_mismatch"
    )
    row = attempt(roster_engine, reference)
    assert row.rule == "role"
    assert row.diagnosis is not None
    assert f"Clever says the user is a {role}" in row.diagnosis
    assert row.account_id is None


def test_a_students_clever_id_presented_as_a_teacher_is_refused(
    client: TestClient, world: dict[str, Any], resolve_headers: dict[str, str], roster_engine: sa.Engine
) -> None:
    reference = failure(
        call(client, resolve_headers, clever_role="teacher", email="teach@d1.org"), "role_mismatch"
    )
    row = attempt(roster_engine, reference)
    assert "this Clever ID as an active student" in (row.diagnosis or "")
    assert row.person_id == world["student"].person_id


def test_inactive_person_and_inactive_account(
    client: TestClient,
    roster: Any,
    world: dict[str, Any],
    resolve_headers: dict[str, str],
    roster_engine: sa.Engine,
) -> None:
    roster.person("d1", "student", clever_id=cid(3), active=False)
    roster.person("d1", "student", clever_id=cid(4), account_active=False)
    reference = failure(call(client, resolve_headers, clever_user_id=cid(3)), "inactive_account")
    row = attempt(roster_engine, reference)
    assert "the roster has this clever id as an inactive student" in (row.diagnosis or "").lower()
    assert row.roster is not None
    assert row.roster["clever_id_match"]["active"] is False
    reference = failure(call(client, resolve_headers, clever_user_id=cid(4)), "inactive_account")
    assert "account is inactive" in (attempt(roster_engine, reference).diagnosis or "")


def test_person_without_an_account_in_that_product(
    client: TestClient, roster: Any, resolve_headers: dict[str, str], roster_engine: sa.Engine
) -> None:
    roster.district("d3", clever_district_id="d3" * 12, licenses={"rocketlit": 5, "innerorbit": 5})
    roster.person("d3", "student", clever_id=cid(9), products=("rocketlit",))
    ok = call(client, resolve_headers, clever_user_id=cid(9), clever_district_id="d3" * 12)
    assert ok.status_code == 200
    reference = failure(
        call(
            client, resolve_headers, clever_user_id=cid(9), clever_district_id="d3" * 12, product="innerorbit"
        ),
        "no_account",
    )
    assert attempt(roster_engine, reference).rule == "account"


def test_product_not_licensed(
    client: TestClient, world: dict[str, Any], resolve_headers: dict[str, str], roster_engine: sa.Engine
) -> None:
    reference = failure(call(client, resolve_headers, product="innerorbit"), "product_not_licensed")
    row = attempt(roster_engine, reference)
    assert row.district_id == "d1"
    assert row.rule == "license"


def test_district_not_linked(
    client: TestClient, world: dict[str, Any], resolve_headers: dict[str, str], roster_engine: sa.Engine
) -> None:
    reference = failure(call(client, resolve_headers, clever_district_id=UNLINKED), "district_not_linked")
    row = attempt(roster_engine, reference)
    assert row.district_id is None
    assert row.clever_district_id == UNLINKED
    assert UNLINKED in (row.diagnosis or "")


def test_unknown_clever_id_without_email_is_no_account(
    client: TestClient, world: dict[str, Any], resolve_headers: dict[str, str], roster_engine: sa.Engine
) -> None:
    for email in (None, "", "   "):
        reference = failure(call(client, resolve_headers, clever_user_id=cid(77), email=email), "no_account")
        row = attempt(roster_engine, reference)
        assert row.email_digest is None
        assert row.rule == "clever_id"


def test_identical_failure_response_whatever_the_roster_holds(
    client: TestClient, world: dict[str, Any], resolve_headers: dict[str, str]
) -> None:
    """L7: the gateway learns the reason code, never what the roster holds."""
    a = call(client, resolve_headers, clever_user_id=cid(77)).json()["error"]
    b = call(client, resolve_headers, clever_user_id=cid(78), email="nobody@d1.org").json()["error"]
    assert a["message"] == b["message"]
    assert set(a["details"][0]) == {"reason", "reference", "message"}


# --- rule 2 ---------------------------------------------------------------------------------------


def test_email_fallback_binds_once_then_the_clever_id_is_required(
    client: TestClient,
    roster: Any,
    world: dict[str, Any],
    resolve_headers: dict[str, str],
    roster_engine: sa.Engine,
) -> None:
    emma = roster.person("d1", "student", email="emma@d1.org", first="Emma", last="Stone")
    roster.enroll("d1", "c1", emma.person_id)
    # case and whitespace in the email Clever sends do not matter
    response = call(client, resolve_headers, clever_user_id=cid(50), email="  Emma@D1.ORG ")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["matched_by"] == "email"
    assert body["account_id"] == emma.accounts["rocketlit"]
    assert body["school_ids"] == ["s1"]
    stored = person(roster_engine, emma.person_id)
    assert (stored.clever_id, stored.clever_id_source) == (cid(50), "login")
    with Session(roster_engine) as s:
        events = s.exec(select(AuditEvent).where(AuditEvent.action == "person.clever_id_bound")).all()
    assert len(events) == 1
    event = events[0]
    assert (event.actor, event.district_id, event.target) == ("sso-gateway", "d1", emma.person_id)
    assert event.details["clever_user_id"] == cid(50)
    assert event.details["reference"] == body["reference"]

    # from now on rule 1 applies, whatever the email
    again = call(client, resolve_headers, clever_user_id=cid(50), email="other@elsewhere.org")
    assert again.status_code == 200
    assert again.json()["matched_by"] == "clever_id"
    # and another Clever user with Emma's email gets nothing (L2, L5)
    reference = failure(
        call(client, resolve_headers, clever_user_id=cid(51), email="emma@d1.org"), "clever_id_conflict"
    )
    row = attempt(roster_engine, reference)
    assert "bound at an earlier login" in (row.diagnosis or "")
    assert person(roster_engine, emma.person_id).clever_id == cid(50)
    with Session(roster_engine) as s:
        assert len(s.exec(select(AuditEvent).where(AuditEvent.action == "person.clever_id_bound")).all()) == 1


def test_email_of_a_person_rostered_with_another_clever_id_is_a_conflict(
    client: TestClient, world: dict[str, Any], resolve_headers: dict[str, str], roster_engine: sa.Engine
) -> None:
    reference = failure(
        call(client, resolve_headers, clever_user_id=cid(60), email="stu@d1.org"), "clever_id_conflict"
    )
    row = attempt(roster_engine, reference)
    assert "from the roster" in (row.diagnosis or "")
    assert person(roster_engine, world["student"].person_id).clever_id == cid(2)


def test_two_people_sharing_an_email_is_ambiguous(
    client: TestClient,
    roster: Any,
    world: dict[str, Any],
    resolve_headers: dict[str, str],
    roster_engine: sa.Engine,
) -> None:
    a = roster.person("d1", "student", email="twin@d1.org")
    b = roster.person("d1", "student", email="twin@d1.org")
    reference = failure(
        call(client, resolve_headers, clever_user_id=cid(61), email="twin@d1.org"), "ambiguous_email"
    )
    row = attempt(roster_engine, reference)
    assert "2 people share this email" in (row.diagnosis or "")
    assert row.roster is not None
    assert {m["person_id"] for m in row.roster["email_matches"]} == {a.person_id, b.person_id}
    assert person(roster_engine, a.person_id).clever_id is None
    assert person(roster_engine, b.person_id).clever_id is None


def test_an_inactive_namesake_does_not_make_the_email_ambiguous(
    client: TestClient, roster: Any, world: dict[str, Any], resolve_headers: dict[str, str]
) -> None:
    roster.person("d1", "student", email="reuse@d1.org", active=False)
    current = roster.person("d1", "student", email="reuse@d1.org")
    response = call(client, resolve_headers, clever_user_id=cid(62), email="reuse@d1.org")
    assert response.status_code == 200, response.text
    assert response.json()["account_id"] == current.accounts["rocketlit"]


def test_email_fallback_never_crosses_districts(
    client: TestClient,
    roster: Any,
    world: dict[str, Any],
    resolve_headers: dict[str, str],
    roster_engine: sa.Engine,
) -> None:
    only_d2 = roster.person("d2", "student", email="shared@x.org")
    failure(call(client, resolve_headers, clever_user_id=cid(70), email="shared@x.org"), "no_account")
    assert person(roster_engine, only_d2.person_id).clever_id is None
    # the same email in both districts: a d1 login binds the d1 person only
    in_d1 = roster.person("d1", "student", email="shared@x.org")
    response = call(client, resolve_headers, clever_user_id=cid(70), email="shared@x.org")
    assert response.status_code == 200
    assert response.json()["district_id"] == "d1"
    assert response.json()["account_id"] == in_d1.accounts["rocketlit"]
    assert person(roster_engine, only_d2.person_id).clever_id is None
    # and the d2 person can still bind their own (different) Clever ID in d2
    response = call(
        client, resolve_headers, clever_user_id=cid(71), clever_district_id=D2, email="shared@x.org"
    )
    assert response.status_code == 200
    assert response.json()["account_id"] == only_d2.accounts["rocketlit"]


def test_email_fallback_checks_role_and_refuses_privileged_clever_roles(
    client: TestClient,
    roster: Any,
    world: dict[str, Any],
    resolve_headers: dict[str, str],
    roster_engine: sa.Engine,
) -> None:
    kid = roster.person("d1", "student", email="kid@d1.org")
    teacher = roster.person("d1", "teacher", email="prof@d1.org")
    failure(
        call(client, resolve_headers, clever_user_id=cid(80), email="kid@d1.org", clever_role="teacher"),
        "role_mismatch",
    )
    reference = failure(
        call(
            client, resolve_headers, clever_user_id=cid(81), email="prof@d1.org", clever_role="district_admin"
        ),
        "role_mismatch",
    )
    assert "only offered to students and teachers" in (attempt(roster_engine, reference).diagnosis or "")
    assert person(roster_engine, kid.person_id).clever_id is None
    assert person(roster_engine, teacher.person_id).clever_id is None
    ok = call(client, resolve_headers, clever_user_id=cid(82), email="prof@d1.org", clever_role="teacher")
    assert ok.status_code == 200
    assert ok.json()["role"] == "teacher"


def test_email_fallback_to_an_inactive_person_binds_nothing(
    client: TestClient,
    roster: Any,
    world: dict[str, Any],
    resolve_headers: dict[str, str],
    roster_engine: sa.Engine,
) -> None:
    gone = roster.person("d1", "student", email="gone@d1.org", active=False)
    failure(call(client, resolve_headers, clever_user_id=cid(90), email="gone@d1.org"), "inactive_account")
    assert person(roster_engine, gone.person_id).clever_id is None


def test_binding_to_a_person_bound_meanwhile_is_a_conflict(roster_engine: sa.Engine, roster: Any) -> None:
    from roster_api.accounts.service import bind_clever_id
    from roster_api.db import session_scope

    roster.district("d9", clever_district_id="d9" * 12)
    p = roster.person("d9", "student", email="x@d9.org")
    with session_scope(roster_engine) as s:
        assert (
            bind_clever_id(session=s, district_id="d9", person_id=p.person_id, clever_user_id=cid(1))
            == "bound"
        )
    with session_scope(roster_engine) as s:
        assert (
            bind_clever_id(session=s, district_id="d9", person_id=p.person_id, clever_user_id=cid(1))
            == "already"
        )
        assert (
            bind_clever_id(session=s, district_id="d9", person_id=p.person_id, clever_user_id=cid(2))
            == "conflict"
        )


# --- access -----------------------------------------------------------------------------------------


def test_resolve_needs_the_resolve_scope(
    client: TestClient, world: dict[str, Any], make_key: Callable[..., str]
) -> None:
    assert call(client, {}).status_code == 401
    read = {"Authorization": f"Bearer {make_key('roster:read', 'roster:write')}"}
    response = call(client, read)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "FORBIDDEN"


def test_a_district_bound_resolve_key_resolves_in_its_district_only(
    client: TestClient, world: dict[str, Any], make_key: Callable[..., str], roster_engine: sa.Engine
) -> None:
    """T2: the district comes from the caller's identity too; a key bound to d2 learns nothing about d1."""
    d2_key = {"Authorization": f"Bearer {make_key('resolve', district='d2')}"}
    reference = failure(call(client, d2_key), "district_not_linked")
    row = attempt(roster_engine, reference)
    assert row.district_id is None
    assert row.person_id is None
    assert row.roster == {
        "licensed": False,
        "clever_id_match": None,
        "sis_id_matches": [],
        "email_matches": [],
    }
    d1_key = {"Authorization": f"Bearer {make_key('resolve', district='d1')}"}
    assert call(client, d1_key).status_code == 200


@pytest.mark.parametrize(
    "change",
    [
        {"clever_user_id": "12345"},
        {"clever_user_id": "zz" * 12},
        {"clever_district_id": None},
        {"product": "mathblaster"},
        {"clever_role": "parent"},
        {"email": "x" * 400},
        {"district_id": "d1"},  # unknown fields are refused (the district never comes from the body)
    ],
)
def test_malformed_requests_get_the_validation_envelope(
    client: TestClient,
    world: dict[str, Any],
    resolve_headers: dict[str, str],
    roster_engine: sa.Engine,
    change: dict[str, Any],
) -> None:
    response = call(client, resolve_headers, **change)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    with Session(roster_engine) as s:
        assert s.exec(select(LoginAttempt)).all() == []


def test_rate_limit_per_key(roster_settings: Any, make_key: Callable[..., str], roster: Any) -> None:
    from roster_api.main import create_app

    roster.district("d1", clever_district_id=D1)
    settings = roster_settings.model_copy(update={"resolve_rate_per_second": 0.001, "resolve_rate_burst": 2})
    headers = {"Authorization": f"Bearer {make_key('resolve')}"}
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        assert [call(c, headers).status_code for _ in range(3)] == [422, 422, 429]
        other = {"Authorization": f"Bearer {make_key('resolve')}"}
        assert call(c, other).status_code == 422
        assert call(c, headers).json()["error"]["code"] == "RATE_LIMITED"


def test_postgres_resolves_through_the_async_pool(client: TestClient, database_url: str) -> None:
    from roster_api.accounts.pg import PgStore
    from roster_api.accounts.service import SqlStore

    store = client.app.state.resolve_runtime.store  # type: ignore[attr-defined]
    assert isinstance(store, SqlStore if database_url.startswith("sqlite") else PgStore)


def test_the_postgres_lookup_fetches_as_many_email_candidates_as_the_rules_expect() -> None:
    from roster_api.accounts.pg import GATHER_AND_RECORD
    from roster_api.accounts.rules import MAX_EMAIL_CANDIDATES

    assert f"LIMIT {MAX_EMAIL_CANDIDATES})" in GATHER_AND_RECORD


async def test_the_sqlalchemy_store_follows_the_same_rules_on_both_databases(
    roster: Any, world: dict[str, Any], roster_engine: sa.Engine
) -> None:
    """SQLite uses it in production; on PostgreSQL it runs in tests only."""
    from roster_api.accounts.flow import Caller, resolve
    from roster_api.accounts.service import SqlStore
    from roster_shared.contracts import ResolveRequest

    caller = Caller(name="sso-gateway", district_id=None)
    store = SqlStore(roster_engine)

    async def run(**fields: Any) -> Any:
        body = {
            "product": "rocketlit",
            "clever_user_id": cid(2),
            "clever_district_id": D1,
            "email": None,
            "clever_role": "student",
            **fields,
        }
        return await resolve(store=store, request=ResolveRequest(**body), caller=caller, pepper="p")

    ok = await run()
    assert ok.result is not None
    assert ok.result.school_ids == ["s1"]
    assert (await run(clever_role="teacher")).decision.reason == ResolveReason.ROLE_MISMATCH
    newcomer = roster.person("d1", "student", email="new@d1.org")
    bound = await run(clever_user_id=cid(40), email="NEW@d1.org ")
    assert bound.result is not None
    assert bound.result.matched_by == "email"
    assert person(roster_engine, newcomer.person_id).clever_id == cid(40)
    conflict = await run(clever_user_id=cid(41), email="new@d1.org")
    assert conflict.decision.reason == ResolveReason.CLEVER_ID_CONFLICT
    with Session(roster_engine) as s:
        assert len(s.exec(select(LoginAttempt)).all()) == 4
        assert len(s.exec(select(AuditEvent)).all()) == 1
