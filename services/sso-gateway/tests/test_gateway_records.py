"""The gateway's typed state and its pure checks: every record kind round-trips through the codec, a
tampered record reads as absent; the authorize and token-request checks from tables; every failure
kind has a page; the RP-initiated logout refuses an ID token hint issued to another client; the Clever
user's sis_id reaches the resolve request."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from clever_sim.seed import SimUser
from roster_shared.contracts import CleverRole, Product, ResolveReason
from sso_gateway.clever import CleverFailure
from sso_gateway.oidc import (
    INVALID_CODE,
    AuthorizeError,
    TokenError,
    check_authorize,
    check_token_request,
)
from sso_gateway.pages import PROBLEMS, Failure
from sso_gateway.records import (
    AccessGrant,
    CleverLogin,
    CodeGrant,
    FinishedLogin,
    LoginTx,
    PendingAuthorize,
    ProblemRecord,
    Record,
    Records,
    SessionRecord,
    UsedCode,
    decode,
    encode,
    key,
    ref,
)
from sso_gateway.runtime import RegisteredClient
from sso_gateway.settings import OidcClient
from sso_gateway.store import SqliteStore

from .gwkit import (
    GW,
    RL_WEB_SECRET,
    STUDENT,
    FakeRoster,
    account,
    location_params,
    make_seed,
)

SID = ref("session-id")
RL_CALLBACK = "https://rocketlit.test/auth/callback"
SAMPLES: list[Record] = [
    LoginTx(product=Product.ROCKETLIT, browser="b" * 64, pending=None, initiated="page", created=1.5),
    FinishedLogin(browser="b" * 64, product=Product.INNERORBIT),
    PendingAuthorize(
        client_id="rocketlit-web",
        product=Product.ROCKETLIT,
        redirect_uri="https://rocketlit.test/cb",
        state="s",
        nonce=None,
        scope="openid",
        code_challenge=None,
    ),
    ProblemRecord(product=Product.ROCKETLIT, problem="no_account", reference="LA-2345", role="student"),
    SessionRecord(
        product=Product.ROCKETLIT,
        sub="acct_1",
        role="student",
        district="d1",
        display_name="Ada L",
        given_name="Ada",
        family_name="L",
        reference="LA-2",
        clever=CleverLogin(user_id="a" * 24, district_id="d" * 24, role=CleverRole.STUDENT),
        resolved_at=1.0,
        created=1.0,
        seen=2.0,
        auth_time=1,
    ),
    CodeGrant(
        client_id="c",
        redirect_uri="https://x.test/cb",
        sid=SID,
        nonce="n",
        scope="openid profile",
        code_challenge="x" * 43,
        auth_time=3,
        expires=60.0,
    ),
    UsedCode(at=ref("token")),
    AccessGrant(sid=SID, client_id="c", scope="openid", sub="acct_1"),
]


@pytest.mark.parametrize("record", SAMPLES, ids=lambda r: type(r).__name__)
def test_every_record_kind_round_trips(record: Record) -> None:
    at = ref("handle")
    assert decode(type(record), at, encode(record, at)) == record
    assert key(record.KIND, at) == f"{record.KIND.value}:{at}"
    assert "handle" not in key(record.KIND, at)


def test_the_kinds_are_distinct() -> None:
    assert len({type(r).KIND for r in SAMPLES}) == len(SAMPLES) == 8


@pytest.mark.parametrize(
    "tamper",
    [
        lambda v: {**v, "data": {**v["data"], "sub": 42}},  # a field of the wrong type
        lambda v: {**v, "data": {**v["data"], "admin": True}},  # a field that does not exist
        lambda v: {**v, "data": {k: x for k, x in v["data"].items() if k != "auth_time"}},  # one missing
        lambda v: {**v, "kind": "at"},  # another kind
        lambda v: {**v, "key": key(SessionRecord.KIND, ref("another-session"))},  # moved from another key
        lambda v: {"sub": "acct_1"},  # not a record at all
    ],
)
def test_a_tampered_record_reads_as_absent(tamper: Any) -> None:
    session = SAMPLES[4]
    assert isinstance(session, SessionRecord)
    assert decode(SessionRecord, SID, tamper(encode(session, SID))) is None
    # the same value, read as another kind, is refused too
    assert decode(AccessGrant, SID, encode(session, SID)) is None


async def test_a_record_edited_in_the_store_is_not_served(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    records = Records(store)
    session = SAMPLES[4]
    await records.put(SID, session, 60)
    await records.put(ref("other"), session, 60)
    assert await records.get(SessionRecord, SID) == session
    db = sqlite3.connect(tmp_path / "s.db")
    # someone with write access copies a session to another key: the copy is refused
    value = db.execute("select value from kv where key = ?", (key(SessionRecord.KIND, SID),)).fetchone()[0]
    db.execute("update kv set value = ? where key = ?", (value, key(SessionRecord.KIND, ref("other"))))
    db.execute('update kv set value = replace(value, \'"auth_time": 1\', \'"auth_time": "x"\')')
    db.commit()
    db.close()
    assert await records.get(SessionRecord, ref("other")) is None
    assert await records.get(SessionRecord, SID) is None
    await store.close()


# --- authorize and token checks, from tables ------------------------------------------------------------

CONFIDENTIAL = RegisteredClient(
    Product.ROCKETLIT,
    OidcClient(client_id="web", client_secret=SecretStr("s" * 20), redirect_uris=["https://web.test/cb"]),
)
PUBLIC = RegisteredClient(
    Product.INNERORBIT, OidcClient(client_id="app", redirect_uris=["https://app.test/cb"])
)
GOOD = {
    "response_type": "code",
    "scope": "openid profile",
    "state": "st",
    "redirect_uri": "https://web.test/cb",
}
CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(b"v" * 43).digest()).rstrip(b"=").decode()
S256 = {"code_challenge": CHALLENGE, "code_challenge_method": "S256"}


@pytest.mark.parametrize(
    ("client", "change", "refusal"),
    [
        (None, {}, ("invalid_request", False)),
        (CONFIDENTIAL, {"redirect_uri": "https://web.test/cb/"}, ("invalid_request", False)),
        (CONFIDENTIAL, {"redirect_uri": "//evil.test/cb"}, ("invalid_request", False)),
        (CONFIDENTIAL, {"response_type": "token"}, ("unsupported_response_type", True)),
        (CONFIDENTIAL, {"scope": "profile"}, ("invalid_scope", True)),
        (CONFIDENTIAL, {"state": ""}, ("invalid_request", True)),
        (CONFIDENTIAL, {"state": "s" * 513}, ("invalid_request", True)),
        (
            CONFIDENTIAL,
            {"code_challenge": CHALLENGE, "code_challenge_method": "plain"},
            ("invalid_request", True),
        ),
        (
            CONFIDENTIAL,
            {"code_challenge": "short", "code_challenge_method": "S256"},
            ("invalid_request", True),
        ),
        (CONFIDENTIAL, {"nonce": "n" * 513}, ("invalid_request", True)),
        (PUBLIC, {"redirect_uri": "https://app.test/cb"}, ("invalid_request", True)),  # no PKCE
        (CONFIDENTIAL, {}, None),
        (CONFIDENTIAL, S256, None),
        (PUBLIC, {"redirect_uri": "https://app.test/cb", **S256}, None),
    ],
)
def test_authorize_checks(client: RegisteredClient | None, change: dict[str, str], refusal: Any) -> None:
    checked = check_authorize({**GOOD, **change}, client)
    if refusal is None:
        assert isinstance(checked, PendingAuthorize)
        assert checked.scope == "openid profile"
        assert checked.state == "st"
        assert checked.product == client.product  # type: ignore[union-attr]
    else:
        assert isinstance(checked, AuthorizeError)
        assert (checked.error, checked.redirect) == refusal


GRANT = CodeGrant(
    client_id="web",
    redirect_uri="https://web.test/cb",
    sid=SID,
    nonce=None,
    scope="openid",
    code_challenge=None,
    auth_time=0,
    expires=100.0,
)
PKCE_GRANT = GRANT.model_copy(update={"code_challenge": CHALLENGE})
FORM = {"redirect_uri": "https://web.test/cb"}


@pytest.mark.parametrize(
    ("grant", "form", "now", "client", "error"),
    [
        (GRANT, FORM, 50.0, CONFIDENTIAL, None),
        (GRANT, FORM, 100.5, CONFIDENTIAL, INVALID_CODE),
        (GRANT, FORM, 50.0, PUBLIC, "issued to another client"),
        (GRANT, {"redirect_uri": "https://web.test/other"}, 50.0, CONFIDENTIAL, "redirect_uri"),
        (GRANT, {**FORM, "code_verifier": "v" * 43}, 50.0, CONFIDENTIAL, "No PKCE challenge"),
        (PKCE_GRANT, {**FORM, "code_verifier": "v" * 43}, 50.0, CONFIDENTIAL, None),
        (PKCE_GRANT, {**FORM, "code_verifier": "w" * 43}, 50.0, CONFIDENTIAL, "PKCE verification failed"),
        (PKCE_GRANT, FORM, 50.0, CONFIDENTIAL, "PKCE verification failed"),
    ],
)
def test_token_request_checks(
    grant: CodeGrant, form: dict[str, str], now: float, client: RegisteredClient, error: Any
) -> None:
    refused = check_token_request(form, client, grant, now)
    if error is None:
        assert refused is None
    elif isinstance(error, TokenError):
        assert refused == error
    else:
        assert refused is not None
        assert (refused.status, refused.error) == (400, "invalid_grant")
        assert error in refused.description


def test_every_failure_kind_has_a_page() -> None:
    kinds = [*Failure, *CleverFailure, *ResolveReason]
    assert sorted(PROBLEMS) == sorted(kinds)


# --- through the gateway ---------------------------------------------------------------------------------


async def test_logout_refuses_a_hint_issued_to_another_client(make_env: Any) -> None:
    """RocketLit's ID token must not end the session and land on InnerOrbit's post-logout page."""
    async with make_env() as env:
        code = location_params(await env.authorize(STUDENT))["code"]
        redeemed = await env.browser.post(
            f"{GW}/token",
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": RL_CALLBACK},
            auth=("rocketlit-web", RL_WEB_SECRET),
        )
        token = redeemed.json()
        response = await env.browser.get(
            f"{GW}/logout",
            params={
                "client_id": "innerorbit-web",
                "id_token_hint": token["id_token"],
                "post_logout_redirect_uri": "https://innerorbit.test/",
            },
        )
        assert response.status_code == 400
        assert "innerorbit.test" not in response.headers.get("location", "")
        assert "Ada Lovelace" in (await env.browser.get(f"{GW}/account")).text  # still logged in
        same = await env.browser.get(
            f"{GW}/logout",
            params={
                "client_id": "rocketlit-web",
                "id_token_hint": token["id_token"],
                "post_logout_redirect_uri": "https://rocketlit.test/logged-out",
            },
        )
        assert same.status_code == 303
        assert same.headers["location"] == "https://rocketlit.test/logged-out"


async def test_the_clever_sis_id_reaches_the_resolve_request(make_env: Any) -> None:
    seed = make_seed()
    sam = "5787451bd72145af0700ab12"
    seed.add_user(
        SimUser(sam, seed.users[STUDENT].district, "student", "Sam", "Ito", None, "5", sis_id="S-42")
    )
    roster = FakeRoster()
    roster.accounts[STUDENT] = account(STUDENT, "rocketlit")
    async with make_env(roster=roster, seed=seed) as env:
        await env.authorize(sam)
        await env.new_browser().aclose()
        await env.authorize(STUDENT, browser=(browser := env.new_browser()))
        await browser.aclose()
    sam_call, ada_call = roster.calls
    assert sam_call["sis_id"] == "S-42"
    assert sam_call["clever_district_id"] == seed.users[STUDENT].district
    assert "email" not in sam_call  # Clever had none
    assert "sis_id" not in ada_call  # Ada has no sis_id at Clever: nothing is made up


REDIS_URL = os.environ.get("SSO_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


async def _stored(env: Any, backend: str, prefix: str) -> str:
    """Every key and value in the gateway's store, as one text."""
    if backend == "sqlite":
        db = sqlite3.connect(env.settings.resolved_session_db)
        stored = "\n".join(f"{k} {v}" for k, v in db.execute("select key, value from kv"))
        db.close()
        return stored
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    keys = [k async for k in client.scan_iter(match=prefix + "*")]
    values = [await client.get(k) for k in keys]
    if keys:
        await client.delete(*keys)
    await client.aclose()
    return "\n".join(f"{_text(k)} {_text(v)}" for k, v in zip(keys, values, strict=True))


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else value or ""


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_the_store_never_holds_states_codes_or_tokens_in_clear(make_env: Any, backend: str) -> None:
    """Every handle is hashed in keys: Clever states (in progress and used), codes, access tokens, session
    ids, pending-request and problem ids; and no value holds Clever's code, token or a person's email."""
    from redis.asyncio import Redis

    prefix = f"sso-test-{secrets.token_hex(6)}:"
    overrides: dict[str, Any] = {}
    if backend == "redis":
        probe = Redis.from_url(REDIS_URL)
        try:
            await probe.ping()
        except Exception:
            pytest.skip("Redis unreachable")
        finally:
            await probe.aclose()
        overrides = {"redis_url": REDIS_URL, "redis_prefix": prefix}
    async with make_env(**overrides) as env:
        started = await env.browser.get(f"{GW}/login/rocketlit/start")  # a state left in progress
        open_state = location_params(started)["state"]
        query = {
            "response_type": "code",
            "client_id": "rocketlit-web",
            "scope": "openid",
            "state": "rp-state",
        }
        query["redirect_uri"] = "https://rocketlit.test/auth/callback"
        to_clever = await env.browser.get(f"{GW}/authorize", params=query)
        used_state = location_params(to_clever)["state"]
        back = await env.follow(to_clever.headers["location"] + f"&login_as={STUDENT}")
        code = location_params(back)["code"]
        tokens = await env.browser.post(
            f"{GW}/token",
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": query["redirect_uri"]},
            auth=("rocketlit-web", "rocketlit-web-secret-0123456789"),
        )
        stranger = await env.authorize("5787451bd72145af0700228e", browser=(other := env.new_browser()))
        await other.aclose()
        problem_id = (
            stranger.headers.get("location", "").rsplit("/", 1)[-1] if stranger.status_code == 303 else ""
        )
        stored = await _stored(env, backend, prefix)
        assert f"tx:{ref(open_state)}" in stored
        assert f"used-tx:{ref(used_state)}" in stored
        assert "sess:" in stored
        assert "at:" in stored
        handles = {open_state, used_state, code, tokens.json()["access_token"], *env.browser.cookies.values()}
        forbidden = handles | {
            *env.sim_state.tokens,
            *env.sim_state.codes,
            "ada.lovelace@springfield.example",
        }
        if problem_id:
            forbidden.add(problem_id)
        assert [value for value in forbidden if value in stored] == []
