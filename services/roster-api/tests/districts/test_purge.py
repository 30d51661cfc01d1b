"""District purge (docs/security.md K2): afterwards no table holds a row of the district, its files are gone,
another district is untouched, and a disposition record says what was removed, when and by whom."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session, SQLModel, select

from roster_api.db import session_scope
from roster_api.models import ApiKey, ImportRun, LoginAttempt, NightlyRun, SftpCredential

D1 = "d1" * 12
D2 = "d2" * 12


def cid(n: int) -> str:
    return f"{n:024x}"


def _seed(roster: Any, engine: sa.Engine, data_dir: Path, district_id: str, clever: str) -> list[Path]:
    roster.district(district_id, clever_district_id=clever, licenses={"rocketlit": 10, "innerorbit": 10})
    roster.school(district_id, "s1")
    roster.section(district_id, "c1", "s1")
    t = roster.person(district_id, "teacher", clever_id=cid(1), products=("rocketlit", "innerorbit"))
    s = roster.person(district_id, "student", clever_id=cid(2), email=f"kid@{district_id}.org")
    roster.teach(district_id, "c1", t.person_id)
    roster.enroll(district_id, "c1", s.person_id)
    upload = data_dir / "uploads" / district_id / "roster.csv"
    sftp = data_dir / "sftp" / district_id / "results" / "roster.csv.txt"
    for path in (upload, sftp):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("student_clever_id\n" + cid(2) + "\n")
    with session_scope(engine) as session:
        session.add(
            ImportRun(
                id=f"imp_{district_id}",
                district_id=district_id,
                status="applied",
                source="api",
                upload_path=str(upload),
            )
        )
        session.add(NightlyRun(district_id=district_id, run_date="2026-11-28"))
        session.add(
            SftpCredential(
                id=f"sftp_{district_id}", district_id=district_id, username=f"{district_id}-upload"
            )
        )
    return [upload, sftp]


def _rows_of(engine: sa.Engine, district_id: str, clever: str) -> dict[str, int]:
    """Every table of the metadata: rows whose district_id (or, for district, id) is the district, or
    whose Clever district id is the district's."""
    found: dict[str, int] = {}
    with engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            if table.name == "disposal":
                continue
            conditions = []
            if "district_id" in table.c:
                conditions.append(table.c.district_id == district_id)
            if table.name == "district":
                conditions.append(table.c.id == district_id)
            if "clever_district_id" in table.c:
                conditions.append(table.c.clever_district_id == clever)
            if not conditions:
                continue
            n = conn.execute(
                sa.select(sa.func.count()).select_from(table).where(sa.or_(*conditions))
            ).scalar_one()
            if n:
                found[table.name] = n
    return found


def test_purge_removes_every_row_and_file_of_the_district(
    client: TestClient,
    roster: Any,
    roster_engine: sa.Engine,
    admin_headers: dict[str, str],
    make_key: Callable[..., str],
) -> None:
    data_dir: Path = client.app.state.settings.data_dir  # type: ignore[attr-defined]
    d1_files = _seed(roster, roster_engine, data_dir, "d1", D1)
    d2_files = _seed(roster, roster_engine, data_dir, "d2", D2)
    d1_key = make_key("roster:read", "resolve", district="d1")
    gateway = {"Authorization": f"Bearer {make_key('resolve', name='sso-gateway')}"}
    body = {"product": "rocketlit", "clever_user_id": cid(2), "clever_role": "student"}
    for clever in (D1, D2):
        assert (
            client.post(
                "/v1/resolve", json={**body, "clever_district_id": clever}, headers=gateway
            ).status_code
            == 200
        )
    # an email-fallback binding writes an audit event for d1
    roster.person("d1", "student", email="new@d1.org")
    bound = {**body, "clever_user_id": cid(3), "email": "new@d1.org", "clever_district_id": D1}
    assert client.post("/v1/resolve", json=bound, headers=gateway).status_code == 200
    # an attempt from before d1 was linked, recorded against the Clever district only
    with session_scope(roster_engine) as session:
        session.add(
            LoginAttempt(
                reference="LA-22222-22222",
                product="rocketlit",
                clever_district_id=D1,
                clever_user_id=cid(2),
                clever_role="student",
                outcome="failure",
                reason="district_not_linked",
            )
        )
    before = _rows_of(roster_engine, "d1", D1)
    assert {
        "person",
        "account",
        "login_attempt",
        "apikey",
        "sftpcredential",
        "import_run",
        "audit_event",
    } <= set(before)
    d2_before = _rows_of(roster_engine, "d2", D2)

    response = client.delete("/v1/districts/d1", params={"confirm": "d1"}, headers=admin_headers)
    assert response.status_code == 200, response.text
    disposal = response.json()
    assert disposal["district_id"] == "d1"
    assert disposal["actor"] == "support-admin"
    assert disposal["counts"]["person"] == 3
    assert disposal["counts"]["login_attempt"] == 2
    assert disposal["counts"]["login_attempt_unlinked"] == 1
    assert disposal["counts"]["files"] == 2
    assert disposal["counts"]["district"] == 1

    assert _rows_of(roster_engine, "d1", D1) == {}
    assert not any(p.exists() for p in d1_files)
    assert not (data_dir / "uploads" / "d1").exists()
    assert not (data_dir / "sftp" / "d1").exists()
    # the other district is untouched
    assert _rows_of(roster_engine, "d2", D2) == d2_before
    assert all(p.exists() for p in d2_files)
    with Session(roster_engine) as session:
        assert session.exec(select(ApiKey).where(ApiKey.district_id == "d1")).all() == []

    # d1's key died with it, immediately (no cached verdict)
    assert (
        client.get("/v1/districts/d1/students", headers={"Authorization": f"Bearer {d1_key}"}).status_code
        == 401
    )
    assert client.get("/v1/districts/d1", headers=admin_headers).status_code == 404
    again = client.delete("/v1/districts/d1", params={"confirm": "d1"}, headers=admin_headers)
    assert again.status_code == 404
    assert again.json()["error"]["code"] == "DISTRICT_NOT_FOUND"

    listed = client.get("/v1/disposals", headers=admin_headers).json()
    assert listed["total"] == 1
    assert listed["items"][0] == disposal
    audit = client.get("/v1/audit", params={"district_id": "d1"}, headers=admin_headers).json()
    assert [e["action"] for e in audit["items"]] == ["district.purge"]
    assert audit["items"][0]["details"]["disposal_id"] == disposal["id"]


@pytest.mark.parametrize("confirm", [None, "", "d2", "D1", "d1 "])
def test_purge_needs_the_district_id_repeated(
    client: TestClient, roster: Any, admin_headers: dict[str, str], confirm: str | None
) -> None:
    roster.district("d1")
    roster.district("d2")
    params = {} if confirm is None else {"confirm": confirm}
    response = client.delete("/v1/districts/d1", params=params, headers=admin_headers)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "CONFIRMATION_REQUIRED"
    assert "?confirm=d1" in error["message"]
    assert client.get("/v1/districts/d1", headers=admin_headers).status_code == 200


def test_only_an_unbound_admin_key_purges(
    client: TestClient, roster: Any, make_key: Callable[..., str]
) -> None:
    roster.district("d1")
    roster.district("d2")
    bound_admin = {"Authorization": f"Bearer {make_key('admin', district='d1')}"}
    response = client.delete("/v1/districts/d1", params={"confirm": "d1"}, headers=bound_admin)
    assert response.status_code == 403
    response = client.delete("/v1/districts/d2", params={"confirm": "d2"}, headers=bound_admin)
    assert response.status_code == 404
    writer = {"Authorization": f"Bearer {make_key('roster:read', 'roster:write', 'resolve')}"}
    assert client.delete("/v1/districts/d1", params={"confirm": "d1"}, headers=writer).status_code == 403
    assert client.get("/v1/disposals", headers=writer).status_code == 403


def test_purge_never_follows_a_stored_path_out_of_data_dir(
    client: TestClient, roster: Any, roster_engine: sa.Engine, admin_headers: dict[str, str], tmp_path: Path
) -> None:
    outside = tmp_path / "outside.csv"
    outside.write_text("keep me")
    roster.district("d1")
    with session_scope(roster_engine) as session:
        session.add(
            ImportRun(id="imp_x", district_id="d1", status="failed", source="api", upload_path=str(outside))
        )
    assert (
        client.delete("/v1/districts/d1", params={"confirm": "d1"}, headers=admin_headers).status_code == 200
    )
    assert outside.read_text() == "keep me"


def test_purge_waits_for_no_import(
    client: TestClient,
    roster: Any,
    admin_headers: dict[str, str],
    roster_engine: sa.Engine,
    database_url: str,
) -> None:
    """On PostgreSQL an import being applied holds the district's advisory lock; purging then is a 409."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite serializes writers with its database lock instead")
    roster.district("d1")
    with roster_engine.connect() as conn, conn.begin():
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('roster-import'), hashtext('d1'))"))
        response = client.delete("/v1/districts/d1", params={"confirm": "d1"}, headers=admin_headers)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "CONFLICT"
    assert (
        client.delete("/v1/districts/d1", params={"confirm": "d1"}, headers=admin_headers).status_code == 200
    )
