"""Password lockout without denial of service, with real asyncssh clients from two loopback addresses
(127.0.0.2 reaches the server on 127.0.0.1 like any other address on Linux): a stranger who knows a
district's username and guesses passwords pauses only its own attempts."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncssh
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from roster_api.db import session_scope
from roster_api.intake import credentials
from roster_api.intake.sftp import FailureThrottle
from roster_api.settings import Settings

SftpEnv = Any  # tests/intake/conftest.py
DISTRICT = "127.0.0.1"
STRANGER = "127.0.0.2"
GUESSES = 36  # concurrent connections, at most CONCURRENCY at once
CONCURRENCY = 12


def _add_key(env: SftpEnv) -> asyncssh.SSHKey:
    key = asyncssh.generate_private_key("ssh-ed25519")
    with session_scope(env.engine) as session:
        credentials.add_public_key(
            session=session,
            district_id=env.login.district_id,
            credential_id=env.login.credential_id,
            public_key=key.export_public_key("openssh").decode(),
            actor="test",
        )
    return key


async def _logs_in(env: SftpEnv, address: str, **options: Any) -> bool:
    try:
        conn = await env.connect(local_addr=(address, 0), **options)
    except asyncssh.PermissionDenied:
        return False
    async with conn:
        return bool(conn.get_extra_info("username") == env.login.username)


async def _key_login(env: SftpEnv, address: str, key: asyncssh.SSHKey) -> bool:
    return await _logs_in(env, address, password="", client_keys=[key], preferred_auth="publickey")


async def _guess(env: SftpEnv, count: int, address: str = STRANGER, *, usernames: bool = False) -> None:
    """`count` wrong passwords at once (at most CONCURRENCY connections open), for the district's
    username or, with `usernames`, each for another one."""
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(n: int) -> None:
        username = f"someone-{n}" if usernames else None
        async with limit:
            assert not await _logs_in(env, address, username=username, password=f"guess-{n}")

    await asyncio.gather(*(one(n) for n in range(count)))


async def _start(start_intake: Any, sftp_settings: Settings, pause: float) -> SftpEnv:
    return await start_intake(settings=sftp_settings.model_copy(update={"sftp_lockout_seconds": pause}))


def _events(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, Any]]:
    fields = (getattr(r, "fields", {}) for r in caplog.records)
    return [f for f in fields if f.get("event") == name]


async def test_a_stranger_guessing_passwords_cannot_lock_the_district_out(
    start_intake: Any, sftp_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="roster_api.sftp")
    env = await _start(start_intake, sftp_settings, pause=60.0)
    key = _add_key(env)
    await _guess(env, GUESSES)
    # the stranger's address is paused for this username, even with the right password...
    assert not await _logs_in(env, STRANGER)
    # ...but a key is never locked out, from any address, and the district's own address gets in
    # with the right password
    assert await _key_login(env, DISTRICT, key)
    assert await _key_login(env, STRANGER, key)
    assert await _logs_in(env, DISTRICT)
    # the guesses after the pause began were refused unchecked and did not extend it
    assert {e["seconds"] for e in _events(caplog, "sftp.auth.lockout")} == {60.0}
    refused = [e for e in _events(caplog, "sftp.auth.failure") if e["reason"] == "locked out"]
    assert len(refused) >= GUESSES // 2
    assert env.intake.throttle.check(env.login.username, STRANGER).refused_for <= 60.0
    # and the district sees the lockout in its login history
    await env.intake.wait_recorded()
    with Session(env.engine) as session:
        _, history = credentials.list_login_events(
            session=session, district_id=env.login.district_id, limit=50, offset=0
        )
    lockouts = [e.details for e in history if e.action == credentials.LOGIN_LOCKOUT]
    assert lockouts
    assert {d["address"] for d in lockouts} == {STRANGER}
    logins = [e.details for e in history if e.action == credentials.LOGIN_SUCCESS]
    assert sorted((d["address"], d["method"]) for d in logins) == [
        (DISTRICT, "password"),
        (DISTRICT, "publickey"),
        (STRANGER, "publickey"),
    ]


SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@SQLITE_ONLY  # the throttle is in memory: one database is enough
async def test_a_locked_out_retry_does_not_extend_the_pause(
    start_intake: Any, sftp_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    env = await _start(start_intake, sftp_settings, pause=2.0)
    await _guess(env, env.settings.sftp_lockout_failures, address=DISTRICT)
    throttle = env.intake.throttle
    first = throttle.check(env.login.username, DISTRICT).refused_for
    assert 0 < first <= 2.0
    # the district retries its right password during the pause (a script, or a person)...
    for _ in range(3):
        assert not await _logs_in(env, DISTRICT)
    assert len([e for e in _events(caplog, "sftp.auth.failure") if e["reason"] == "locked out"]) == 3
    # ...which neither counted nor extended the pause: it gets in once the first pause is over
    remaining = throttle.check(env.login.username, DISTRICT).refused_for
    assert remaining <= first
    await asyncio.sleep(remaining)  # waiting out the pause itself
    assert await _logs_in(env, DISTRICT)


@SQLITE_ONLY
async def test_one_address_has_a_small_budget_across_usernames(sftp_env: SftpEnv) -> None:
    budget = sftp_env.intake.throttle.address_budget
    assert budget < 3 * sftp_env.settings.sftp_lockout_failures
    await _guess(sftp_env, budget, usernames=True)
    assert not await _logs_in(sftp_env, STRANGER)  # the address is paused, whatever the username
    assert await _logs_in(sftp_env, DISTRICT)  # other addresses are not


def test_throttle_counts_per_username_and_address() -> None:
    now = [1000.0]
    throttle = FailureThrottle(threshold=3, base_seconds=10, clock=lambda: now[0])
    assert throttle.address_budget == 6
    for _ in range(2):
        assert throttle.failure("u", "a1") == (0, 0)
    assert throttle.check("u", "a1").refused_for == 0
    assert throttle.failure("u", "a1") == (10, 0)
    assert throttle.check("u", "a1").refused_for == 10
    # another address is not refused for the same username, only slowed down, doubling per failure
    other = throttle.check("u", "a2")
    assert (other.refused_for, other.delay) == (0, throttle.delay_base * 4)
    for _ in range(10):
        throttle.failure("u", f"spray-{_}")
    assert throttle.check("u", "a2").delay == throttle.max_delay
    # once the pause is over, each further failure doubles it (at most an hour)
    now[0] += 10
    assert throttle.failure("u", "a1") == (20, 0)
    now[0] += 20
    assert throttle.failure("u", "a1") == (40, 0)
    throttle.success("u", "a1")
    assert throttle.check("u", "a1").refused_for == 0
    pauses = [throttle.failure("v", "b")[0] for _ in range(3)]
    for _ in range(4):  # each failure after a pause ended doubles the next one
        now[0] += pauses[-1]
        pauses.append(throttle.failure("v", "b")[0])
    assert pauses == [0, 0, 10, 20, 40, 80, 160]
    now[0] += 900
    assert throttle.check("v", "b").refused_for == 0
    assert throttle.failure("v", "b") == (0, 0)  # the earlier failures are older than 15 minutes


def test_throttle_address_budget_spans_usernames() -> None:
    throttle = FailureThrottle(threshold=3, base_seconds=10, clock=lambda: 0.0)
    for n in range(5):
        assert throttle.failure(f"user-{n}", "a") == (0, 0)
    assert throttle.failure("user-5", "a") == (0, 10)
    assert throttle.check("anyone", "a").refused_for == 10
    assert throttle.check("anyone", "b").refused_for == 0


def test_login_history_lists_logins_and_lockouts_for_the_district_only(
    client: TestClient,
    admin_headers: dict[str, str],
    make_key: Any,
    create_district: Any,
    roster_engine: Any,
) -> None:
    create_district("d1")
    create_district("d2")
    url = "/v1/districts/{}/sftp-credentials"
    username = client.post(url.format("d1"), json={}, headers=admin_headers).json()["username"]
    login = {"address": DISTRICT, "method": "publickey"}
    lockout = {"address": STRANGER, "method": "password", "scope": "username and address", "seconds": 30.0}
    record = credentials.record_login_event
    assert record(engine=roster_engine, username=username, action=credentials.LOGIN_SUCCESS, details=login)
    assert record(engine=roster_engine, username=username, action=credentials.LOGIN_LOCKOUT, details=lockout)
    assert not record(engine=roster_engine, username="nobody-1", action=credentials.LOGIN_LOCKOUT, details={})

    own = {"Authorization": f"Bearer {make_key('admin', district='d1')}"}
    page = client.get(url.format("d1") + "/login-history", headers=own)
    assert page.status_code == 200, page.text
    body = page.json()
    assert body["total"] == 2
    newest, oldest = body["items"]
    assert (newest["event"], newest["address"], newest["scope"], newest["seconds"]) == (
        "lockout",
        STRANGER,
        "username and address",
        30.0,
    )
    assert (oldest["event"], oldest["username"], oldest["method"]) == ("login", username, "publickey")
    assert client.get(url.format("d2") + "/login-history", headers=admin_headers).json()["total"] == 0
    assert client.get(url.format("d2") + "/login-history", headers=own).status_code == 404
    reader = {"Authorization": f"Bearer {make_key('roster:read')}"}
    assert client.get(url.format("d1") + "/login-history", headers=reader).status_code == 403
    # also in the audit log, by action
    audit = client.get("/v1/audit", params={"action": credentials.LOGIN_LOCKOUT}, headers=own).json()
    assert audit["total"] == 1
