"""Configuration, keys, the session stores (SQLite and the real Redis), headers and cookies, ops
endpoints, and a scan of everything logged during logins for codes, tokens, cookies and emails."""

from __future__ import annotations

import io
import logging
import os
import secrets
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jwt
from joserfc.jwk import KeySet
from pydantic import ValidationError

from roster_shared.transport import LeanTransport
from roster_shared.web import JsonFormatter
from sso_gateway.keys import KeyRing, SigningKeyError
from sso_gateway.main import create_app
from sso_gateway.settings import Settings
from sso_gateway.store import RedisStore, SqliteStore, StoreUnavailable

from .gwkit import (
    CLEVER,
    GW,
    STRANGER,
    STUDENT,
    Env,
    FakeRoster,
    MultiProductRoster,
    gateway_settings,
    location_params,
)

# --- configuration ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"issuer": "http://sso.example"}, "SSO_ISSUER must use https"),
        ({"issuer": "sso.example"}, "SSO_ISSUER must be an absolute URL"),
        ({"clever_token_url": "http://clever.com/oauth/tokens"}, "SSO_CLEVER_TOKEN_URL must use https"),
        ({"roster_api_key": ""}, "SSO_ROSTER_API_KEY must be set"),
        ({"signing_key": None}, "SSO_SIGNING_KEY or SSO_SIGNING_KEY_FILES is required"),
        ({"rocketlit": None, "innerorbit": None}, "configure at least one product"),
        ({"session_idle_seconds": 7200, "session_absolute_seconds": 3600}, "SSO_SESSION_ABSOLUTE_SECONDS"),
    ],
)
def test_bad_configuration_refuses_to_start(tmp_path: Path, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        gateway_settings(tmp_path, **overrides)


def product(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "display_name": "RocketLit",
        "clever_client_id": "clever-rl",
        "clever_client_secret": "rocketlit-clever-secret-0123456789",
        "clever_redirect_uri": f"{GW}/callback/clever/rocketlit",
        "clients": [{"client_id": "rl", "client_secret": "x" * 20, "redirect_uris": ["https://rl.test/cb"]}],
    }
    base.update(changes)
    return base


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"clever_redirect_uri": f"{GW}/callback/clever/innerorbit"},
         "must end with /callback/clever/rocketlit"),
        ({"clever_client_secret": "change-me"}, "CLEVER_CLIENT_SECRET must be set"),
        ({"clients": [{"client_id": "rl", "client_secret": "short", "redirect_uris": ["https://rl.test/cb"]}]},
         "16\\+ characters"),
        ({"clients": [{"client_id": "rl", "redirect_uris": ["http://rl.test/cb"]}]},
         "redirect_uris must use https"),
        ({"clients": [{"client_id": "rl", "redirect_uris": ["https://rl.test/cb#x"]}]}, "fragment"),
        ({"clients": [{"client_id": "rl", "redirect_uris": []}]}, "at least 1 item"),
        ({"clients": [{"client_id": "rocketlit-web", "redirect_uris": ["https://rl.test/cb"]}]},
         "configured twice"),
    ],
)  # fmt: skip
def test_bad_product_configuration_refuses_to_start(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    base = gateway_settings(tmp_path).model_dump()
    innerorbit = base["innerorbit"]
    innerorbit["clients"][0]["client_id"] = "rocketlit-web"
    with pytest.raises(ValidationError, match=message):
        Settings(
            environment="production",
            issuer=GW,
            roster_api_key="rk_x",
            signing_key=gateway_settings(tmp_path).signing_key,
            rocketlit=product(**changes),
            innerorbit=innerorbit if "configured twice" in message else None,
        )


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SSO_ISSUER", "http://127.0.0.1:8100")
    monkeypatch.setenv("SSO_ROCKETLIT__DISPLAY_NAME", "RocketLit")
    monkeypatch.setenv("SSO_ROCKETLIT__CLEVER_CLIENT_ID", "abc")
    monkeypatch.setenv("SSO_ROCKETLIT__CLEVER_CLIENT_SECRET", "def")
    monkeypatch.setenv(
        "SSO_ROCKETLIT__CLEVER_REDIRECT_URI", "http://127.0.0.1:8100/callback/clever/rocketlit"
    )
    monkeypatch.setenv(
        "SSO_ROCKETLIT__CLIENTS",
        '[{"client_id": "rocketlit-web", "client_secret": "s3cret", "redirect_uris": ["http://localhost:3000/cb"]}]',
    )
    settings = Settings(data_dir=tmp_path)
    assert settings.development
    assert settings.rocketlit is not None
    assert settings.rocketlit.clients[0].redirect_uris == ["http://localhost:3000/cb"]
    assert settings.innerorbit is None


def test_cli_refuses_bad_configuration(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sso_gateway.cli import main

    monkeypatch.setenv("SSO_ENVIRONMENT", "production")
    monkeypatch.setenv("SSO_ISSUER", "http://insecure.example")
    with pytest.raises(SystemExit) as exit_info:
        main(["serve"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "SSO_ISSUER must use https" in err
    assert "configure at least one product" in err


# --- keys ------------------------------------------------------------------


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _key_set(jwks: dict[str, Any]) -> KeySet:
    """The published JWKS, read the way a relying party reads it."""
    return KeySet.import_key_set({"keys": jwks["keys"]})


@pytest.mark.parametrize(
    ("key", "alg"),
    [(rsa.generate_private_key(65537, 2048), "RS256"), (ec.generate_private_key(ec.SECP256R1()), "ES256")],
)
def test_rs256_and_es256_keys_sign_with_kid(
    tmp_path: Path, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, alg: str
) -> None:
    ring = KeyRing.from_settings(gateway_settings(tmp_path, signing_key=_pem(key)))
    token = ring.sign({"sub": "a"})
    jwks = ring.jwks()
    assert jwks["keys"][0]["alg"] == alg
    assert "d" not in jwks["keys"][0]  # public parts only
    decoded = jwt.decode(token, _key_set(jwks), algorithms=[alg])
    assert decoded.header["kid"] == jwks["keys"][0]["kid"]
    assert ring.verify(token)["sub"] == "a"


def test_rotation_publishes_old_key_and_signs_with_new(tmp_path: Path) -> None:
    old, new = tmp_path / "old.pem", tmp_path / "new.pem"
    old.write_text(_pem(ec.generate_private_key(ec.SECP256R1())))
    new.write_text(_pem(rsa.generate_private_key(65537, 2048)))
    before = KeyRing.from_settings(gateway_settings(tmp_path, signing_key=None, signing_key_files=[old]))
    token = before.sign({"sub": "a"})
    after = KeyRing.from_settings(gateway_settings(tmp_path, signing_key=None, signing_key_files=[new, old]))
    assert after.verify(token)["sub"] == "a"
    assert jwt.decode(after.sign({"sub": "b"}), _key_set(after.jwks())).header["alg"] == "RS256"


@pytest.mark.parametrize(
    "pem",
    [
        "not a key",
        _pem(rsa.generate_private_key(65537, 1024)),  # noqa: S505 (the point: too small a key is refused)
        _pem(ec.generate_private_key(ec.SECP384R1())),
    ],
)
def test_unusable_keys_are_refused(tmp_path: Path, pem: str) -> None:
    with pytest.raises(SigningKeyError):
        KeyRing.from_settings(gateway_settings(tmp_path, signing_key=pem))


def test_forged_and_unsigned_tokens_do_not_verify(tmp_path: Path) -> None:
    ring = KeyRing.from_settings(gateway_settings(tmp_path))
    other = KeyRing.from_settings(gateway_settings(tmp_path))
    with pytest.raises(ValueError, match="kid"):
        ring.verify(other.sign({"sub": "x"}))
    header, payload, _ = ring.sign({"sub": "x"}).split(".")
    with pytest.raises(Exception):  # noqa: B017, PT011 (joserfc raises its own error types)
        ring.verify(f"{header}.{payload}.")


def test_development_key_is_generated_once_with_0600(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        rocketlit=product(clever_redirect_uri="http://127.0.0.1:8100/callback/clever/rocketlit"),
    )
    first = KeyRing.from_settings(settings)
    path = tmp_path / "signing-key.pem"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert KeyRing.from_settings(settings).active.kid == first.active.kid


# --- session stores ------------------------------------------------------------------

REDIS_URL = os.environ.get("SSO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(params=["sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        sqlite = SqliteStore(tmp_path / "s.db")
        yield sqlite
        await sqlite.close()
        return
    prefix = f"sso-test-{secrets.token_hex(6)}:"
    redis = RedisStore(REDIS_URL, prefix)
    if not await redis.ping():
        await redis.close()
        if os.environ.get("SSO_TEST_REDIS_URL"):
            pytest.fail(f"Redis required (SSO_TEST_REDIS_URL) but unreachable at {REDIS_URL}")
        pytest.skip(f"Redis unreachable at {REDIS_URL}")
    yield redis
    from redis.asyncio import Redis

    cleanup = Redis.from_url(REDIS_URL)
    keys = [key async for key in cleanup.scan_iter(match=prefix + "*")]
    if keys:
        await cleanup.delete(*keys)
    await cleanup.aclose()
    await redis.close()


async def test_store_put_get_pop_is_single_use(store: Any) -> None:
    await store.put("code:a", {"v": 1}, 60)
    assert await store.get("code:a") == {"v": 1}
    assert await store.pop("code:a") == {"v": 1}
    assert await store.pop("code:a") is None
    assert await store.get("code:a") is None


async def test_store_concurrent_pops_give_one_winner(store: Any) -> None:
    import asyncio

    await store.put("code:race", {"v": 1}, 60)
    results = await asyncio.gather(*(store.pop("code:race") for _ in range(20)))
    assert sum(r is not None for r in results) == 1


async def test_store_add_only_when_absent_and_ttl_expires(store: Any) -> None:
    import asyncio

    assert await store.add("used:a", {"v": 1}, 0.3)
    assert not await store.add("used:a", {"v": 2}, 0.3)
    assert await store.get("used:a") == {"v": 1}
    await asyncio.sleep(0.45)
    assert await store.get("used:a") is None
    assert await store.add("used:a", {"v": 3}, 5)
    await store.delete("used:a")
    assert await store.get("used:a") is None
    assert await store.ping()


async def test_store_never_holds_clever_tokens_codes_or_emails(make_env: Any) -> None:
    import sqlite3

    async with make_env() as env:
        back = await env.authorize(STUDENT)
        code = location_params(back)["code"]
        await env.browser.post(
            f"{GW}/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": "https://rocketlit.test/auth/callback",
            },
            auth=("rocketlit-web", "rocketlit-web-secret-0123456789"),
        )
        db = sqlite3.connect(env.settings.resolved_session_db)
        stored = "\n".join(f"{k} {v}" for k, v in db.execute("select key, value from kv"))
        db.close()
        assert "sess:" in stored  # the scan looked at the real store
        forbidden = {*env.sim_state.tokens, *env.sim_state.codes, code, "ada.lovelace@springfield.example"}
        forbidden |= set(env.browser.cookies.values())
        assert [value for value in forbidden if value in stored] == []


async def test_unreachable_redis_is_store_unavailable() -> None:
    down = RedisStore("redis://127.0.0.1:1/0", "x:")
    assert not await down.ping()
    with pytest.raises(StoreUnavailable):
        await down.get("a")
    await down.close()


async def test_full_login_on_redis(make_env: Any) -> None:
    prefix = f"sso-test-{secrets.token_hex(6)}:"
    probe = RedisStore(REDIS_URL, prefix)
    reachable = await probe.ping()
    await probe.close()
    if not reachable:
        pytest.skip("Redis unreachable")
    async with make_env(redis_url=REDIS_URL, redis_prefix=prefix) as env:
        back = await env.authorize(STUDENT)
        assert back.headers["location"].startswith("https://rocketlit.test/auth/callback?code=")
        from redis.asyncio import Redis

        client = Redis.from_url(REDIS_URL)
        keys = [k.decode() async for k in client.scan_iter(match=prefix + "*")]
        assert any(k.startswith(prefix + "sess:") for k in keys)
        assert any(k.startswith(prefix + "code:") for k in keys)
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def test_redis_down_during_login_is_a_503_page(make_env: Any) -> None:
    async with make_env(redis_url="redis://127.0.0.1:1/0") as env:
        response = await env.browser.get(f"{GW}/login/rocketlit/start")
        assert response.status_code == 503
        assert "cannot save your login" in response.text
        assert "RocketLit is having trouble" in response.text
        assert (await env.browser.get(f"{GW}/readyz")).status_code == 503


# --- headers, cookies, pages ------------------------------------------------------------------


async def test_security_headers_and_cookie_attributes(make_env: Any) -> None:
    async with make_env() as env:
        start = await env.browser.get(f"{GW}/login/rocketlit/start")
        assert start.status_code == 303
        for response in (start, await env.browser.get(f"{GW}/login/rocketlit")):
            csp = response.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in csp
            assert "default-src 'none'" in csp
            assert response.headers["referrer-policy"] == "no-referrer"
            assert response.headers["cache-control"] == "no-store"
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["strict-transport-security"].startswith("max-age=31536000")
        cookie = start.headers["set-cookie"]
        assert cookie.startswith("__Host-sso_browser=")
        for attribute in ("HttpOnly", "Path=/", "SameSite=lax", "Secure"):
            assert attribute in cookie
        assert "Domain" not in cookie
        done = await env.follow(start.headers["location"] + f"&login_as={STUDENT}")
        session_cookie = next(
            c for c in done.headers.get_list("set-cookie") if c.startswith("__Host-sso_session=")
        )
        assert "HttpOnly" in session_cookie
        assert "Secure" in session_cookie
        assert "SameSite=lax" in session_cookie


async def test_spoofed_host_headers_do_not_change_redirect_uris(make_env: Any) -> None:
    async with make_env() as env:
        start = await env.browser.get(
            f"{GW}/login/rocketlit/start", headers={"Host": "evil.test", "X-Forwarded-Host": "evil.test"}
        )
        params = location_params(start)
        assert params["redirect_uri"] == f"{GW}/callback/clever/rocketlit"
        assert start.headers["location"].startswith(f"{CLEVER}/oauth/authorize?")
        discovery = await env.browser.get(
            f"{GW}/.well-known/openid-configuration", headers={"X-Forwarded-Host": "evil.test"}
        )
        assert "evil" not in discovery.text


async def test_trusted_hosts_refuse_other_host_headers(make_env: Any) -> None:
    async with make_env(trusted_hosts=["sso.test"]) as env:
        assert (await env.browser.get(f"{GW}/healthz")).status_code == 200
        assert (await env.browser.get(f"{GW}/healthz", headers={"Host": "evil.test"})).status_code == 400


async def test_development_mode_cookies_have_no_prefix(make_env: Any, tmp_path: Path) -> None:
    async with make_env(environment="development") as env:
        start = await env.browser.get(f"{GW}/login/rocketlit/start")
        assert start.headers["set-cookie"].startswith("sso_browser=")
        assert "Secure" not in start.headers["set-cookie"]
        assert "strict-transport-security" not in start.headers


async def test_login_page_and_callback_answer_clean_303(make_env: Any) -> None:
    async with make_env() as env:
        page = await env.browser.get(f"{GW}/login/rocketlit")
        assert page.status_code == 200
        assert "Log in with Clever" in page.text
        assert 'href="/login/rocketlit/start"' in page.text
        start = await env.browser.get(f"{GW}/login/rocketlit/start")
        callback = await env.browser.get(start.headers["location"] + f"&login_as={STUDENT}")
        done = await env.browser.get(callback.headers["location"])
        assert done.status_code == 303
        assert "code=" not in done.headers["location"]
        assert done.headers["location"].startswith("https://rocketlit.test/auth/login?iss=")


async def test_ops_endpoints_discovery_and_jwks(make_env: Any) -> None:
    async with make_env() as env:
        assert (await env.browser.get(f"{GW}/healthz")).json() == {"status": "ok"}
        assert (await env.browser.get(f"{GW}/readyz")).json() == {"status": "ready"}
        discovery = (await env.browser.get(f"{GW}/.well-known/openid-configuration")).json()
        assert discovery["issuer"] == GW
        assert discovery["authorization_endpoint"] == f"{GW}/authorize"
        assert discovery["code_challenge_methods_supported"] == ["S256"]
        assert discovery["id_token_signing_alg_values_supported"] == ["ES256"]
        assert set(discovery["token_endpoint_auth_methods_supported"]) >= {
            "client_secret_basic",
            "client_secret_post",
        }
        jwks = (await env.browser.get(discovery["jwks_uri"])).json()
        assert jwks["keys"][0]["kid"]
        await env.authorize(STUDENT)
        metrics = (await env.browser.get(f"{GW}/metrics")).text
        assert 'sso_logins_total{outcome="success",product="rocketlit"} 1.0' in metrics
        assert "sso_upstream_seconds" in metrics
        missing = await env.browser.get(f"{GW}/nope")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "NOT_FOUND"


async def test_unknown_product_paths_are_friendly(make_env: Any) -> None:
    async with make_env() as env:
        for path in ("/login/zork", "/login/zork/start", "/callback/clever/zork?code=x&state=y"):
            response = await env.browser.get(f"{GW}{path}")
            assert response.status_code == 400
            assert "location" not in response.headers


# --- nothing secret in the logs ------------------------------------------------------------------


class _Capture(logging.Formatter):
    """The production JSON lines (extra fields included); not a JsonFormatter instance, so the app's
    configure_logging() does not remove this handler when it installs its own."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = JsonFormatter("sso-gateway")

    def format(self, record: logging.LogRecord) -> str:
        return self.inner.format(record)


async def test_logs_hold_no_codes_tokens_cookies_or_emails(make_env: Any) -> None:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(_Capture())
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    roster = FakeRoster(failures={STRANGER: "no_account"})
    secrets_seen: set[str] = set()
    try:
        async with make_env(roster=roster) as env:
            assert not isinstance(roster, MultiProductRoster)
            # a failed login (email in the resolve request), then a successful one with a fresh env
            await env.authorize(STRANGER)
            await env.browser.get(f"{GW}/callback/clever/rocketlit?code=" + "c" * 40)  # unsolicited
            secrets_seen |= {c for c in env.sim_state.codes}
            secrets_seen |= set(env.sim_state.tokens)
            secrets_seen |= {v for v in env.browser.cookies.values()}
        async with make_env() as env:
            back = await env.authorize(STUDENT)
            params = location_params(back)
            token = await env.browser.post(
                f"{GW}/token",
                data={"grant_type": "authorization_code", "code": params["code"],
                      "redirect_uri": "https://rocketlit.test/auth/callback"},
                auth=("rocketlit-web", "rocketlit-web-secret-0123456789"),
            )  # fmt: skip
            body = token.json()
            await env.browser.get(
                f"{GW}/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}
            )
            await env.browser.post(
                f"{GW}/token", data={"grant_type": "authorization_code", "code": params["code"]}
            )
            secrets_seen |= {params["code"], params["state"], body["access_token"], body["id_token"]}
            secrets_seen |= set(env.sim_state.codes) | set(env.sim_state.tokens)
            secrets_seen |= {v for v in env.browser.cookies.values()}
            secrets_seen |= {u.email for u in env.sim_state.seed.users.values() if u.email}
            secrets_seen.add("rocketlit-web-secret-0123456789")
            secrets_seen.add(env.settings.roster_api_key.get_secret_value())
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    logged = buffer.getvalue()
    assert "clever login" in logged  # the scan looked at real log lines
    assert len(secrets_seen) > 10
    leaked = [s for s in secrets_seen if len(s) >= 8 and s in logged]  # ("1" is the restart-guard cookie)
    assert leaked == []
    for fragment in ("@springfield.example", "code=", "state=", "Bearer ", "sso_session="):
        assert fragment not in logged


def test_clever_host_is_not_contacted_for_unsolicited_codes() -> None:
    # documented in test_gateway_flows (token_calls == []); this guards the constant the flows rely on
    assert CLEVER.startswith("https://")
    assert isinstance(Env, type)


@pytest.mark.parametrize(
    ("choice", "expected"), [("lean", LeanTransport), ("httpx", httpx.AsyncHTTPTransport)]
)
async def test_outbound_transport_is_chosen_by_setting(tmp_path: Path, choice: str, expected: type) -> None:
    """SSO_OUTBOUND_TRANSPORT: the lean transport by default, httpx's own as the operator's fallback,
    for the calls to Clever and to roster-api alike."""
    app = create_app(gateway_settings(tmp_path, outbound_transport=choice))
    async with app.router.lifespan_context(app):
        gateway = app.state.gateway
        assert isinstance(gateway.clever_http._transport, expected)
        assert isinstance(gateway.roster._http._transport, expected)
