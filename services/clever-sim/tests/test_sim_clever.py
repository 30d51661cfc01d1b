"""The simulator behaves like Clever as reference/clever.md describes it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from clever_sim.app import create_app
from clever_sim.cli import build_seed
from clever_sim.seed import Seed, SimApp, SimUser, derive_id, load_roster

DISTRICT = "6202763c8243d2100123dae5"
ADA = "5787451bd72145af0700228b"
CB = "https://app.test/callback/clever/rocketlit"
ROSTER = """\ufeffSchool_ID ;school_name;teacher_email;teacher_first_name;teacher_last_name;teacher_clever_id;class_id;class_name;student_first_name;student_last_name;student_clever_id;student_email;student_grade_level
sch-1;Springfield Elementary;Grace.Hopper@springfield.example;Grace;Hopper;5787451bd72145af0700228c;c-1;Math 5;Ada;Lovelace;5787451bd72145af0700228b;ada@springfield.example;5
sch-1;Springfield Elementary;Grace.Hopper@springfield.example;Grace;Hopper;5787451bd72145af0700228c;c-1;Math 5;Alan;Turing;;alan@springfield.example;K
"""  # noqa: E501


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def sim(clock: Clock) -> AsyncIterator[httpx.AsyncClient]:
    seed = Seed()
    load_roster(seed, ROSTER, district_id=DISTRICT, district_name="Springfield USD")
    seed.add_app(SimApp("rl", "rl-secret", [CB, "https://app.test/other"], "RocketLit"))
    app = create_app(seed, clock=clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://clever.test") as c:
        c.app = app  # type: ignore[attr-defined]
        yield c


def query(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["location"]).query).items()}


async def get_code(sim: httpx.AsyncClient, user: str = ADA, redirect_uri: str = CB) -> str:
    response = await sim.get(
        "/oauth/authorize",
        params={"response_type": "code", "client_id": "rl", "redirect_uri": redirect_uri, "state": "st",
                "login_as": user},
    )  # fmt: skip
    params = query(response)
    assert params["state"] == "st"
    assert len(params["code"]) == 40
    return params["code"]


def test_roster_seeding_matches_the_csv_format() -> None:
    seed = Seed()
    assert load_roster(seed, ROSTER, district_id=DISTRICT, district_name="Springfield USD") == 3
    grace = seed.users["5787451bd72145af0700228c"]
    assert (grace.role, grace.email, grace.schools) == (
        "teacher",
        "grace.hopper@springfield.example",
        ["sch-1"],
    )
    alan = seed.users[derive_id(DISTRICT, "alan@springfield.example")]  # no Clever ID in the roster
    assert alan.role == "student"
    assert alan.grade == "K"
    assert seed.users[ADA].grade == "5"


def test_cli_seed_from_files(tmp_path: Path) -> None:
    roster = tmp_path / "springfield.csv"
    roster.write_text(ROSTER, encoding="utf-8")
    seed = build_seed(
        None,
        [f"{DISTRICT}={roster}"],
        ["rl:secret:http://127.0.0.1:8100/callback/clever/rocketlit:RocketLit"],
    )
    assert seed.apps["rl"].redirect_uris == ["http://127.0.0.1:8100/callback/clever/rocketlit"]
    assert seed.apps["rl"].name == "RocketLit"
    assert ADA in seed.users
    with pytest.raises(SystemExit):
        build_seed(None, [], ["rl:secret:http://127.0.0.1:8100/cb"])  # NAME missing


async def test_token_exchange_needs_basic_auth_and_same_redirect_uri(sim: httpx.AsyncClient) -> None:
    code = await get_code(sim)
    body = {"code": code, "grant_type": "authorization_code", "redirect_uri": CB}
    no_auth = await sim.post("/oauth/tokens", json=body)
    assert no_auth.status_code == 401
    in_body = await sim.post("/oauth/tokens", json={**body, "client_id": "rl", "client_secret": "rl-secret"})
    assert in_body.status_code == 401  # credentials in the body are not Clever's way
    wrong = await sim.post(
        "/oauth/tokens", json={**body, "redirect_uri": "https://app.test/other"}, auth=("rl", "rl-secret")
    )
    assert wrong.status_code == 400
    # the failed attempt used the code up, as a real one-time code
    again = await sim.post("/oauth/tokens", json=body, auth=("rl", "rl-secret"))
    assert again.status_code == 400


@pytest.mark.parametrize("form", [False, True])
async def test_code_redeems_once_as_json_or_form(sim: httpx.AsyncClient, form: bool) -> None:
    code = await get_code(sim)
    body = {"code": code, "grant_type": "authorization_code", "redirect_uri": CB}
    kwargs = {"data": body} if form else {"json": body}
    first = await sim.post("/oauth/tokens", auth=("rl", "rl-secret"), **kwargs)  # type: ignore[arg-type]
    assert first.status_code == 200
    assert set(first.json()) >= {"access_token"}
    reuse = await sim.post("/oauth/tokens", auth=("rl", "rl-secret"), **kwargs)  # type: ignore[arg-type]
    assert reuse.status_code == 400
    assert reuse.json()["error"] == "invalid_grant"


async def test_code_expires_after_60_seconds(sim: httpx.AsyncClient, clock: Clock) -> None:
    code = await get_code(sim)
    clock.offset = 61
    response = await sim.post(
        "/oauth/tokens",
        json={"code": code, "grant_type": "authorization_code", "redirect_uri": CB},
        auth=("rl", "rl-secret"),
    )
    assert response.status_code == 400


async def token_for(sim: httpx.AsyncClient, user: str = ADA) -> str:
    code = await get_code(sim, user)
    response = await sim.post(
        "/oauth/tokens",
        json={"code": code, "grant_type": "authorization_code", "redirect_uri": CB},
        auth=("rl", "rl-secret"),
    )
    token: str = response.json()["access_token"]
    return token


async def test_v3_me_users_and_userinfo_shapes(sim: httpx.AsyncClient) -> None:
    bearer = {"Authorization": f"Bearer {await token_for(sim)}"}
    me = (await sim.get("/v3.0/me", headers=bearer)).json()
    assert me["data"] == {"id": ADA, "district": DISTRICT, "type": "user", "authorized_by": "district"}
    assert {"rel": "canonical", "uri": f"/v3.0/users/{ADA}"} in me["links"]
    user = (await sim.get(f"/v3.0/users/{ADA}", headers=bearer)).json()["data"]
    assert user["name"] == {"first": "Ada", "last": "Lovelace"}
    assert user["email"] == "ada@springfield.example"
    assert list(user["roles"]) == ["student"]
    assert user["roles"]["student"]["grade"] == "5"
    other = await sim.get("/v3.0/users/5787451bd72145af0700228c", headers=bearer)
    assert other.status_code == 403  # SSO tokens read only their own user
    info = (await sim.get("/userinfo", headers=bearer)).json()
    assert info["sub"] == ADA
    assert info["user_type"] == "student"
    assert info["email_verified"] is False
    assert (await sim.get("/v3.0/me")).status_code == 401


async def test_users_without_email_have_no_email_key(sim: httpx.AsyncClient) -> None:
    app = sim.app  # type: ignore[attr-defined]
    app.state.sim.seed.add_user(SimUser("5787451bd72145af0700aaaa", DISTRICT, "student", "No", "Mail"))
    bearer = {"Authorization": f"Bearer {await token_for(sim, '5787451bd72145af0700aaaa')}"}
    user = (await sim.get("/v3.0/users/5787451bd72145af0700aaaa", headers=bearer)).json()["data"]
    assert "email" not in user


async def test_authorize_errors(sim: httpx.AsyncClient) -> None:
    base = {"response_type": "code", "client_id": "rl", "redirect_uri": CB, "state": "st"}
    denied = query(await sim.get("/oauth/authorize", params={**base, "sim_error": "access_denied"}))
    assert denied["error"] == "access_denied"
    assert denied["state"] == "st"
    unregistered = await sim.get("/oauth/authorize", params={**base, "redirect_uri": "https://evil.test/"})
    assert unregistered.status_code == 400
    unknown = await sim.get("/oauth/authorize", params={**base, "client_id": "nope"})
    assert unknown.status_code == 400
    picker = await sim.get("/oauth/authorize", params=base)
    assert picker.status_code == 200
    assert "Ada Lovelace" in picker.text
    assert "login_as=5787451bd72145af0700228b" in picker.text


async def test_instant_login_and_portal_go_to_first_redirect_uri_without_state(
    sim: httpx.AsyncClient,
) -> None:
    link = await sim.get(
        "/oauth/instant-login", params={"client_id": "rl", "district_id": DISTRICT, "login_as": ADA}
    )
    params = query(link)
    assert link.headers["location"].startswith(CB + "?")
    assert "state" not in params
    assert (await sim.get("/portal")).status_code == 200  # Clever session from the instant login
    launch = await sim.get("/portal/launch/rl")
    assert launch.headers["location"].startswith(CB + "?code=")
    assert "state" not in query(launch)
    # with a Clever session, authorize comes straight back (this is what makes the state restart seamless)
    again = await sim.get(
        "/oauth/authorize",
        params={"response_type": "code", "client_id": "rl", "redirect_uri": CB, "state": "n"},
    )
    assert query(again)["state"] == "n"


async def test_seeding_endpoints(sim: httpx.AsyncClient) -> None:
    added = await sim.post(
        "/sim/users",
        json={"id": "5787451bd72145af0700ffff", "district": DISTRICT, "role": "teacher", "first_name": "Not",
              "last_name": "Rostered"},
    )  # fmt: skip
    assert added.status_code == 201
    assert any(u["id"] == "5787451bd72145af0700ffff" for u in (await sim.get("/sim/users")).json())
    bad = await sim.post("/sim/users", json={"id": "short", "district": DISTRICT})
    assert bad.status_code == 400
    other = "0123456789abcdef01234567"
    roster = await sim.post(f"/sim/districts/{other}/roster?name=Shelbyville", content=ROSTER.encode())
    assert roster.json() == {"district": other, "users": 3}
    # Clever IDs are global: the later roster moved Ada to Shelbyville
    assert any(u["id"] == ADA and u["district"] == other for u in (await sim.get("/sim/users")).json())
    app = await sim.post(
        "/sim/apps", json={"client_id": "io", "client_secret": "s", "redirect_uris": ["https://io.test/cb"]}
    )
    assert app.status_code == 201
    faults = await sim.put(  # as curl -d sends it: JSON text with a form content type
        "/sim/faults",
        content=b'{"token_status": 503}',
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert faults.status_code == 200
    code = await get_code(sim)
    failing = await sim.post(
        "/oauth/tokens",
        json={"code": code, "grant_type": "authorization_code", "redirect_uri": CB},
        auth=("rl", "rl-secret"),
    )
    assert failing.status_code == 503


async def test_sis_id_only_for_users_that_have_one(sim: httpx.AsyncClient) -> None:
    """`roles.<role>.sis_id` is the district's own id: present when the roster gave one, else absent
    (a made-up one could match someone else's id at login)."""
    app = sim.app  # type: ignore[attr-defined]
    csv_text = (
        "school_id,school_name,class_id,class_name,teacher_email,teacher_first_name,teacher_last_name,"
        "teacher_sis_id,student_email,student_first_name,student_last_name,student_grade_level,student_sis_id\n"
        "s1,School,c1,Class,t@x.org,Tess,Ng,T-9,,Sam,Ito,5,S-42\n"
    )
    load_roster(app.state.sim.seed, csv_text, district_id=DISTRICT, district_name="Springfield")
    students = [u for u in app.state.sim.seed.users.values() if u.sis_id == "S-42"]
    assert len(students) == 1  # no email and no Clever ID: kept, with an id derived from the sis_id
    bearer = {"Authorization": f"Bearer {await token_for(sim, students[0].id)}"}
    user = (await sim.get(f"/v3.0/users/{students[0].id}", headers=bearer)).json()["data"]
    assert user["roles"]["student"]["sis_id"] == "S-42"
    assert user["roles"]["student"]["student_number"] == "S-42"
    bearer = {"Authorization": f"Bearer {await token_for(sim)}"}
    ada = (await sim.get(f"/v3.0/users/{ADA}", headers=bearer)).json()["data"]
    assert "sis_id" not in ada["roles"]["student"]
    added = await sim.post(
        "/sim/users",
        json={"id": "5787451bd72145af0700bbbb", "district": DISTRICT, "role": "teacher", "sis_id": "T-1"},
    )
    assert added.status_code == 201
    assert app.state.sim.seed.users["5787451bd72145af0700bbbb"].sis_id == "T-1"
