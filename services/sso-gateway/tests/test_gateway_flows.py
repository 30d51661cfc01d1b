"""The whole login with a real OIDC client library (Authlib) as the frontend, the Clever simulator and a
roster-api contract fake in-process; and every way the Clever leg can go wrong."""

from __future__ import annotations

import base64
import hashlib
import secrets
import warnings
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from joserfc import jwt
from joserfc.errors import InvalidClaimError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from .gwkit import (
    CLEVER,
    GW,
    IO_WEB_SECRET,
    RL_WEB_SECRET,
    STRANGER,
    STUDENT,
    STUDENT_B,
    TEACHER,
    Env,
    FakeRoster,
    account,
    location_params,
)

pytestmark = pytest.mark.filterwarnings("ignore:The httpx module is deprecated")

with warnings.catch_warnings():
    # Authlib asks for httpx2; the project (and Starlette's TestClient) are on httpx
    warnings.simplefilter("ignore")
    from authlib.integrations.httpx_client import AsyncOAuth2Client


def frontend(env: Env, client_id: str, secret: str | None, method: str, redirect_uri: str) -> Any:
    return AsyncOAuth2Client(
        client_id=client_id,
        client_secret=secret,
        token_endpoint_auth_method=method,
        redirect_uri=redirect_uri,
        scope="openid profile",
        code_challenge_method="S256",
        transport=httpx.ASGITransport(app=env.gateway),
    )


async def verify_id_token(env: Env, id_token: str, audience: str, nonce: str) -> dict[str, Any]:
    jwks = (await env.browser.get(f"{GW}/jwks.json")).json()
    decoded = jwt.decode(id_token, KeySet.import_key_set(jwks), algorithms=["ES256", "RS256"])
    registry = JWTClaimsRegistry(
        iss={"essential": True, "value": GW},
        aud={"essential": True, "value": audience},
        nonce={"essential": True, "value": nonce},
        sub={"essential": True},
        exp={"essential": True},
    )
    registry.validate(decoded.claims)
    assert decoded.header["kid"]
    return dict(decoded.claims)


@pytest.mark.parametrize(
    ("product", "client_id", "secret", "method", "redirect_uri"),
    [
        (
            "rocketlit",
            "rocketlit-web",
            RL_WEB_SECRET,
            "client_secret_basic",
            "https://rocketlit.test/auth/callback",
        ),
        (
            "innerorbit",
            "innerorbit-web",
            IO_WEB_SECRET,
            "client_secret_post",
            "https://innerorbit.test/oidc/callback",
        ),
        ("rocketlit", "rocketlit-app", None, "none", "https://rocketlit.test/app/callback"),
    ],
)
async def test_authlib_client_logs_in_through_clever(
    make_env: Any, product: str, client_id: str, secret: str | None, method: str, redirect_uri: str
) -> None:
    async with make_env() as env:
        client = frontend(env, client_id, secret, method, redirect_uri)
        verifier = secrets.token_urlsafe(48)
        nonce = secrets.token_urlsafe(16)
        url, state = client.create_authorization_url(f"{GW}/authorize", code_verifier=verifier, nonce=nonce)
        first = await env.browser.get(url)
        assert first.status_code == 303
        assert first.headers["location"].startswith(f"{CLEVER}/oauth/authorize?response_type=code")
        clever_state = location_params(first)["state"]
        assert len(clever_state) >= 43
        assert clever_state != state
        back = await env.follow(first.headers["location"] + f"&login_as={STUDENT}")
        assert back.status_code == 303
        assert back.headers["location"].startswith(redirect_uri + "?")
        params = location_params(back)
        assert params["state"] == state
        assert params["iss"] == GW
        token = await client.fetch_token(
            f"{GW}/token", authorization_response=back.headers["location"], code_verifier=verifier
        )
        claims = await verify_id_token(env, token["id_token"], client_id, nonce)
        assert claims["sub"] == f"acc_{product[:2]}_228b"
        assert claims["product"] == product
        assert claims["role"] == "student"
        assert claims["district"] == "springfield-usd"
        assert not {"name", "given_name", "family_name", "email"} & set(claims)  # no PII in tokens
        assert claims["exp"] - claims["iat"] <= 300
        info = (await client.get(f"{GW}/userinfo")).json()
        assert info == {
            "sub": claims["sub"],
            "role": "student",
            "district": "springfield-usd",
            "product": product,
            "name": "Ada Lovelace",
            "given_name": "Ada",
            "family_name": "Lovelace",
        }
        await client.aclose()


async def test_userinfo_has_no_names_without_profile_scope(make_env: Any) -> None:
    async with make_env() as env:
        back = await env.authorize(STUDENT, scope="openid")
        code = location_params(back)["code"]
        token = await env.browser.post(
            f"{GW}/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": "https://rocketlit.test/auth/callback",
            },
            auth=("rocketlit-web", RL_WEB_SECRET),
        )
        info = await env.browser.get(
            f"{GW}/userinfo", headers={"Authorization": f"Bearer {token.json()['access_token']}"}
        )
        assert info.status_code == 200
        assert "name" not in info.json()
        assert info.json()["role"] == "student"


async def test_teacher_gets_teacher_role(make_env: Any) -> None:
    async with make_env() as env:
        back = await env.authorize(TEACHER)
        code = location_params(back)["code"]
        token = await redeem(env, code)
        claims = jwt.decode(
            token["id_token"], KeySet.import_key_set((await env.browser.get(f"{GW}/jwks.json")).json())
        ).claims
        assert claims["role"] == "teacher"


async def redeem(
    env: Env,
    code: str,
    *,
    client: tuple[str, str] = ("rocketlit-web", RL_WEB_SECRET),
    redirect_uri: str = "https://rocketlit.test/auth/callback",
    **extra: str,
) -> dict[str, Any]:
    response = await env.browser.post(
        f"{GW}/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, **extra},
        auth=client,
    )
    body: dict[str, Any] = response.json()
    body["_status"] = response.status_code
    return body


# --- Clever-initiated logins -------------------------------------------------------------------------


async def test_portal_icon_is_restarted_with_state_and_ends_at_login_initiation(make_env: Any) -> None:
    async with make_env() as env:
        await env.login_at_clever(STUDENT)
        launch = await env.browser.get(f"{CLEVER}/portal/launch/clever-rl")
        assert launch.status_code == 302
        unsolicited = launch.headers["location"]
        assert unsolicited.startswith(f"{GW}/callback/clever/rocketlit?code=")
        assert "state=" not in unsolicited
        portal_code = location_params(launch)["code"]
        restart = await env.browser.get(unsolicited)
        assert restart.status_code == 303
        assert restart.headers["location"].startswith(f"{CLEVER}/oauth/authorize?")
        assert location_params(restart)["state"]
        end = await env.follow(restart.headers["location"])
        assert end.status_code == 303
        assert (
            end.headers["location"]
            == f"https://rocketlit.test/auth/login?iss={GW.replace(':', '%3A').replace('/', '%2F')}"
        )
        assert portal_code not in env.sim_state.token_calls  # the unsolicited code was never redeemed
        assert len(env.sim_state.token_calls) == 1
        # the frontend now starts its normal flow and gets a code without another trip to Clever
        again = await env.browser.get(
            f"{GW}/authorize",
            params={
                "response_type": "code",
                "client_id": "rocketlit-web",
                "scope": "openid",
                "redirect_uri": "https://rocketlit.test/auth/callback",
                "state": "s1",
            },
        )
        assert again.headers["location"].startswith("https://rocketlit.test/auth/callback?code=")
        assert (await redeem(env, location_params(again)["code"]))["_status"] == 200


async def test_instant_login_link(make_env: Any) -> None:
    async with make_env() as env:
        link = await env.browser.get(
            f"{CLEVER}/oauth/instant-login",
            params={"client_id": "clever-io", "district_id": "6202763c8243d2100123dae5", "login_as": TEACHER},
        )
        assert link.status_code == 302
        assert "state=" not in link.headers["location"]
        end = await env.follow(link.headers["location"])
        assert end.headers["location"].startswith("https://innerorbit.test/oidc/login?iss=")
        account = await env.browser.get(f"{GW}/account")
        assert "Grace Hopper" in account.text
        assert "InnerOrbit" in account.text


async def test_restart_loop_is_stopped(make_env: Any) -> None:
    async with make_env() as env:
        await env.login_at_clever(STUDENT)
        first = await env.browser.get(f"{GW}/callback/clever/rocketlit?code=" + "a" * 40)
        assert first.status_code == 303  # restarted once
        second = await env.follow(f"{GW}/callback/clever/rocketlit?code=" + "b" * 40)
        assert second.status_code == 400
        assert "could not finish logging you in" in second.text
        assert env.sim_state.token_calls == []


async def test_a_failed_portal_login_does_not_trip_the_loop_guard(make_env: Any) -> None:
    roster = FakeRoster(failures={STRANGER: "no_account"})
    async with make_env(roster=roster) as env:
        await env.login_at_clever(STRANGER)
        for _ in range(2):  # the person clicks the icon again right after the error page
            launch = await env.browser.get(f"{CLEVER}/portal/launch/clever-rl")
            page = await env.follow(launch.headers["location"])
            assert page.status_code == 403
            assert "find your RocketLit account" in page.text


# --- state ------------------------------------------------------------------


async def start_and_get_callback(env: Env, user: str = STUDENT) -> str:
    """Runs to the point where Clever sends the browser back to the gateway; returns that callback URL."""
    first = await env.browser.get(
        f"{GW}/authorize",
        params={
            "response_type": "code",
            "client_id": "rocketlit-web",
            "scope": "openid",
            "state": "fs",
            "redirect_uri": "https://rocketlit.test/auth/callback",
        },
    )
    at_clever = await env.browser.get(first.headers["location"] + f"&login_as={user}")
    assert at_clever.status_code == 302
    return str(at_clever.headers["location"])


async def test_mismatched_state_is_refused_without_token_call(make_env: Any) -> None:
    async with make_env() as env:
        callback = await start_and_get_callback(env)
        params = location_params(httpx.Response(302, headers={"location": callback}))
        forged = f"{GW}/callback/clever/rocketlit?code={params['code']}&state={secrets.token_urlsafe(32)}"
        redirect = await env.browser.get(forged)
        assert redirect.status_code == 303  # never a page at the callback URL: it holds the code
        assert redirect.headers["location"].startswith("/problem/")
        response = await env.follow(forged)
        assert response.status_code == 400
        assert "expired" in response.text
        assert env.sim_state.token_calls == []
        assert env.browser.cookies.get("__Host-sso_session") is None


async def test_expired_state_is_refused(make_env: Any) -> None:
    async with make_env() as env:
        callback = await start_and_get_callback(env)
        env.clock.advance(601)
        response = await env.follow(callback)
        assert response.status_code == 400
        assert env.sim_state.token_calls == []


async def test_state_from_another_browser_is_refused(make_env: Any) -> None:
    async with make_env() as env:
        callback = await start_and_get_callback(env)
        async with env.new_browser() as other:
            response = await env.follow(callback, other)
        assert response.status_code == 400
        assert env.sim_state.token_calls == []
        # and the transaction is burnt: the right browser cannot use it afterwards either
        assert (await env.follow(callback)).status_code == 400


async def test_replayed_callback_continues_without_redeeming_twice(make_env: Any) -> None:
    async with make_env() as env:
        callback = await start_and_get_callback(env)
        first = await env.browser.get(callback)
        assert first.headers["location"].startswith("https://rocketlit.test/auth/callback?code=")
        replay = await env.browser.get(callback)  # back button / refresh
        assert replay.status_code == 303
        assert replay.headers["location"].startswith("https://rocketlit.test/auth/login")
        assert len(env.sim_state.token_calls) == 1
        async with env.new_browser() as other:  # someone else replaying the URL gets nothing
            stolen = await env.follow(callback, other)
        assert stolen.status_code == 400
        assert "__Host-sso_session" not in stolen.headers.get("set-cookie", "")


async def test_clever_rejecting_the_code_is_a_friendly_page(make_env: Any) -> None:
    async with make_env() as env:
        callback = await start_and_get_callback(env)
        code = location_params(httpx.Response(302, headers={"location": callback}))["code"]
        env.sim_state.codes[code].used = True  # e.g. redeemed by something else first
        response = await env.follow(callback)
        assert response.status_code == 400
        assert "Clever did not accept this login" in response.text


# --- code replay at the gateway hop ------------------------------------------------------------------


async def test_gateway_code_is_single_use_and_replay_revokes(make_env: Any) -> None:
    async with make_env() as env:
        code = location_params(await env.authorize(STUDENT))["code"]
        first = await redeem(env, code)
        assert first["_status"] == 200
        bearer = {"Authorization": f"Bearer {first['access_token']}"}
        assert (await env.browser.get(f"{GW}/userinfo", headers=bearer)).status_code == 200
        second = await redeem(env, code)
        assert second["_status"] == 400
        assert second["error"] == "invalid_grant"
        revoked = await env.browser.get(f"{GW}/userinfo", headers=bearer)
        assert revoked.status_code == 401
        assert "invalid_token" in revoked.headers["www-authenticate"]


async def test_gateway_code_expires_after_60_seconds(make_env: Any) -> None:
    async with make_env() as env:
        code = location_params(await env.authorize(STUDENT))["code"]
        env.clock.advance(61)
        assert (await redeem(env, code))["error"] == "invalid_grant"


async def test_token_endpoint_checks_client_redirect_uri_and_pkce(make_env: Any) -> None:
    async with make_env() as env:
        code = location_params(await env.authorize(STUDENT))["code"]
        wrong_secret = await redeem(env, code, client=("rocketlit-web", "nope"))
        assert wrong_secret["_status"] == 401
        assert wrong_secret["error"] == "invalid_client"
        other_client = await redeem(env, code, client=("innerorbit-web", IO_WEB_SECRET))
        assert other_client["error"] == "invalid_grant"  # and the code is burnt
        assert (await redeem(env, code))["error"] == "invalid_grant"

        code = location_params(await env.authorize(None))["code"]  # existing session: no Clever hop
        assert (await redeem(env, code, redirect_uri="https://rocketlit.test/other"))[
            "error"
        ] == "invalid_grant"

        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        code = location_params(
            await env.authorize(None, code_challenge=challenge, code_challenge_method="S256")
        )["code"]
        assert (await redeem(env, code, code_verifier=secrets.token_urlsafe(48)))["error"] == "invalid_grant"
        code = location_params(
            await env.authorize(None, code_challenge=challenge, code_challenge_method="S256")
        )["code"]
        assert (await redeem(env, code, code_verifier=verifier))["_status"] == 200


async def test_public_client_must_use_s256(make_env: Any) -> None:
    async with make_env() as env:
        plain = await env.authorize(
            None,
            client_id="rocketlit-app",
            redirect_uri="https://rocketlit.test/app/callback",
            code_challenge="x" * 43,
            code_challenge_method="plain",
        )
        assert location_params(plain)["error"] == "invalid_request"
        missing = await env.authorize(
            None, client_id="rocketlit-app", redirect_uri="https://rocketlit.test/app/callback"
        )
        assert location_params(missing)["error"] == "invalid_request"


async def test_authorize_requires_state_and_openid(make_env: Any) -> None:
    async with make_env() as env:
        no_state = await env.browser.get(
            f"{GW}/authorize",
            params={
                "response_type": "code",
                "client_id": "rocketlit-web",
                "scope": "openid",
                "redirect_uri": "https://rocketlit.test/auth/callback",
            },
        )
        assert location_params(no_state)["error"] == "invalid_request"
        no_openid = await env.authorize(None, scope="profile")
        assert location_params(no_openid)["error"] == "invalid_scope"
        token_flow = await env.authorize(None, response_type="token")
        assert location_params(token_flow)["error"] == "unsupported_response_type"


async def test_prompt_none_and_prompt_login(make_env: Any) -> None:
    async with make_env() as env:
        assert location_params(await env.authorize(None, prompt="none"))["error"] == "login_required"
        await env.authorize(STUDENT)
        silent = await env.authorize(None, prompt="none")
        assert "code" in location_params(silent)
        forced = await env.browser.get(
            f"{GW}/authorize",
            params={"response_type": "code", "client_id": "rocketlit-web", "scope": "openid", "state": "s",
                    "prompt": "login", "redirect_uri": "https://rocketlit.test/auth/callback"},
        )  # fmt: skip
        assert forced.headers["location"].startswith(f"{CLEVER}/oauth/authorize")


# --- redirect URIs and open redirects ------------------------------------------------------------------

EVIL_REDIRECTS = [
    "https://evil.test/auth/callback",
    "//evil.test/auth/callback",
    "/\\evil.test/auth/callback",
    "javascript:alert(document.cookie)",
    "https://rocketlit.test/auth/callback/../../evil",
    "https://rocketlit.test/auth/callback?next=https://evil.test",
    "https://rocketlit.test/auth/callback#frag",
    "https%3A%2F%2Frocketlit.test%2Fauth%2Fcallback",
    "%2F%2Fevil.test",
    "https://rocketlit.test.evil.test/auth/callback",
    "https://rocketlit.test@evil.test/auth/callback",
    "HTTPS://ROCKETLIT.TEST/auth/callback",
    "https://rocketlit.test/auth/callback%2F..%2F..%2Fevil",
    "https://innerorbit.test/oidc/callback",  # another product's URI
    "",
]


@pytest.mark.parametrize("redirect_uri", EVIL_REDIRECTS)
async def test_authorize_never_redirects_to_unregistered_uri(make_env: Any, redirect_uri: str) -> None:
    async with make_env() as env:
        response = await env.browser.get(
            f"{GW}/authorize",
            params={
                "response_type": "code",
                "client_id": "rocketlit-web",
                "scope": "openid",
                "state": "s",
                "redirect_uri": redirect_uri,
            },
        )
        assert response.status_code == 400
        assert "location" not in response.headers
        assert "<script" not in response.text
        assert "javascript:" not in response.text


@pytest.mark.parametrize("target", [*EVIL_REDIRECTS[:-1], "https://rocketlit.test/auth/callback"])
async def test_logout_never_redirects_to_unlisted_uri(make_env: Any, target: str) -> None:
    async with make_env() as env:
        response = await env.browser.get(
            f"{GW}/logout", params={"client_id": "rocketlit-web", "post_logout_redirect_uri": target}
        )
        assert response.status_code == 400
        assert "location" not in response.headers


async def test_unknown_client_gets_a_page_not_a_redirect(make_env: Any) -> None:
    async with make_env() as env:
        response = await env.browser.get(
            f"{GW}/authorize",
            params={"client_id": "nobody", "redirect_uri": "https://evil.test/", "response_type": "code"},
        )
        assert response.status_code == 400
        assert "location" not in response.headers


# --- products are separate audiences ------------------------------------------------------------------


async def test_rocketlit_token_is_rejected_by_innerorbit(make_env: Any) -> None:
    async with make_env() as env:
        code = location_params(await env.authorize(STUDENT))["code"]
        token = await redeem(env, code)
        jwks = KeySet.import_key_set((await env.browser.get(f"{GW}/jwks.json")).json())
        claims = jwt.decode(token["id_token"], jwks).claims
        innerorbit = JWTClaimsRegistry(
            iss={"essential": True, "value": GW}, aud={"essential": True, "value": "innerorbit-web"}
        )
        with pytest.raises(InvalidClaimError):
            innerorbit.validate(claims)
        # and a RocketLit session does not log the person in to InnerOrbit silently
        io = await env.browser.get(
            f"{GW}/authorize",
            params={
                "response_type": "code",
                "client_id": "innerorbit-web",
                "scope": "openid",
                "state": "s",
                "redirect_uri": "https://innerorbit.test/oidc/callback",
            },
        )
        assert io.headers["location"].startswith(f"{CLEVER}/oauth/authorize")


# --- failures ------------------------------------------------------------------


async def test_clever_access_denied_is_a_friendly_escaped_page(make_env: Any) -> None:
    async with make_env() as env:
        back = await env.authorize(None, **{})
        assert back.status_code == 200  # Clever's user picker
        first = await env.browser.get(
            f"{GW}/authorize",
            params={
                "response_type": "code",
                "client_id": "rocketlit-web",
                "scope": "openid",
                "state": "s",
                "redirect_uri": "https://rocketlit.test/auth/callback",
            },
        )
        denied = await env.follow(first.headers["location"] + "&deny=1")
        assert denied.status_code == 403
        assert "RocketLit" in denied.text
        assert "Login cancelled" in denied.text
        assert "Try again" in denied.text
        assert env.sim_state.token_calls == []
        hostile = await env.follow(
            f"{GW}/callback/clever/rocketlit?"
            + urlencode(
                {
                    "error": "<script>alert(1)</script>",
                    "error_description": "<img src=x onerror=alert(1)>",
                }
            )
        )
        assert hostile.status_code == 400
        assert "<script>" not in hostile.text
        assert "<img" not in hostile.text


async def test_roster_api_down_is_a_503_page(make_env: Any) -> None:
    roster = FakeRoster(down=True)
    async with make_env(roster=roster) as env:
        response = await env.authorize(STUDENT)
        assert response.status_code == 503
        assert "RocketLit is having trouble" in response.text
        assert env.browser.cookies.get("__Host-sso_session") is None
        assert (await env.browser.get(f"{GW}/readyz")).status_code == 503


@pytest.mark.parametrize(
    ("roster", "status", "text"),
    [
        (FakeRoster(slow=True), 503, "RocketLit is having trouble"),
        (FakeRoster(status=500), 503, "RocketLit is having trouble"),
        (FakeRoster(status=429), 503, "RocketLit is having trouble"),
        (FakeRoster(status=401), 502, "RocketLit login is not set up correctly"),
    ],
)
async def test_roster_api_slow_failing_or_refusing(
    make_env: Any, roster: FakeRoster, status: int, text: str
) -> None:
    async with make_env(roster=roster) as env:
        response = await env.authorize(STUDENT)
        assert response.status_code == status
        assert text in response.text


async def test_clever_slow_is_a_503_page(make_env: Any) -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    async with make_env(clever_transport=httpx.MockTransport(timeout)) as env:
        response = await env.authorize(STUDENT)
        assert response.status_code == 503
        assert "Clever is not responding" in response.text


async def test_clever_down_is_a_503_page(make_env: Any) -> None:
    async with make_env() as env:
        env.sim_state.faults.token_status = 503
        response = await env.authorize(STUDENT)
        assert response.status_code == 503
        assert "Clever is not responding" in response.text


@pytest.mark.parametrize(
    ("reason", "text"),
    [
        ("no_account", "We couldn&#39;t find your RocketLit account"),
        ("inactive_account", "Your RocketLit account is turned off"),
        ("product_not_licensed", "Your school doesn&#39;t have RocketLit"),
        ("district_not_linked", "isn&#39;t connected to RocketLit"),
        ("ambiguous_email", "more than one RocketLit account"),
        ("role_mismatch", "Clever says you are a student"),
        ("clever_id_conflict", "linked to a different Clever account"),
    ],
)
async def test_each_resolve_reason_has_its_page_with_reference(make_env: Any, reason: str, text: str) -> None:
    roster = FakeRoster(failures={STRANGER: reason})
    async with make_env(roster=roster) as env:
        response = await env.authorize(STRANGER)
        assert response.status_code == 403
        assert text in response.text
        assert "Reference code" in response.text
        assert roster.calls
        call = roster.calls[0]
        assert call == {
            "product": "rocketlit",
            "clever_user_id": STRANGER,
            "clever_district_id": "6202763c8243d2100123dae5",
            "email": "eve.outsider@springfield.example",
            "clever_role": "student",
        }


# --- shared devices, sessions, logout ------------------------------------------------------------------


async def test_second_login_on_a_shared_device_replaces_the_first(make_env: Any) -> None:
    async with make_env() as env:
        code = location_params(await env.authorize(STUDENT))["code"]
        first_token = (await redeem(env, code))["access_token"]
        first_sid = env.browser.cookies.get("__Host-sso_session")
        assert first_sid
        # Ada leaves; Alan logs in to Clever on the same browser and clicks the portal icon
        await env.browser.get(f"{CLEVER}/logout")
        await env.login_at_clever(STUDENT_B)
        launch = await env.browser.get(f"{CLEVER}/portal/launch/clever-rl")
        await env.follow(launch.headers["location"])
        second_sid = env.browser.cookies.get("__Host-sso_session")
        assert second_sid
        assert second_sid != first_sid
        account = await env.browser.get(f"{GW}/account")
        assert "Alan Turing" in account.text
        assert "Ada" not in account.text
        # Ada's session id and her access token are dead
        async with env.new_browser() as other:
            other.cookies.set("__Host-sso_session", first_sid, domain="sso.test")
            assert "not logged in" in (await other.get(f"{GW}/account")).text
        stale = await env.browser.get(f"{GW}/userinfo", headers={"Authorization": f"Bearer {first_token}"})
        assert stale.status_code == 401


async def peek_authorize(env: Env) -> str:
    """Where /authorize sends the browser, without following: the frontend, or Clever (no session)."""
    response = await env.browser.get(
        f"{GW}/authorize",
        params={
            "response_type": "code",
            "client_id": "rocketlit-web",
            "scope": "openid",
            "state": "s",
            "redirect_uri": "https://rocketlit.test/auth/callback",
        },
    )
    assert response.status_code == 303
    return str(response.headers["location"])


async def test_session_idle_and_absolute_timeouts(make_env: Any) -> None:
    async with make_env(session_idle_seconds=600, session_absolute_seconds=3600) as env:
        await env.authorize(STUDENT)
        assert (await peek_authorize(env)).startswith("https://rocketlit.test/")
        env.clock.advance(601)
        assert (await peek_authorize(env)).startswith(f"{CLEVER}/")  # idle too long: log in again
        await env.authorize(STUDENT)
        for _ in range(6):
            env.clock.advance(550)  # active all along...
            assert (await peek_authorize(env)).startswith("https://rocketlit.test/")
        env.clock.advance(550)  # ...but past the absolute limit now
        assert (await peek_authorize(env)).startswith(f"{CLEVER}/")


async def test_session_rechecks_the_roster_before_new_codes(make_env: Any) -> None:
    roster = FakeRoster()
    roster.accounts[STUDENT] = account(STUDENT, "rocketlit")
    async with make_env(roster=roster, session_recheck_seconds=300) as env:
        await env.authorize(STUDENT)
        assert len(roster.calls) == 1
        env.clock.advance(200)
        assert (await peek_authorize(env)).startswith("https://rocketlit.test/")
        assert len(roster.calls) == 1  # recent enough: no call
        env.clock.advance(200)
        assert (await peek_authorize(env)).startswith("https://rocketlit.test/")
        assert len(roster.calls) == 2
        assert roster.calls[1].get("email") is None  # the re-check sends the Clever ID alone
        roster.down = True  # a roster-api blip does not log the class out
        env.clock.advance(301)
        assert (await peek_authorize(env)).startswith("https://rocketlit.test/")
        roster.down = False
        del roster.accounts[STUDENT]  # the district removed Ada from the roster
        env.clock.advance(301)
        assert (await peek_authorize(env)).startswith(f"{CLEVER}/")
        assert "not logged in" in (await env.browser.get(f"{GW}/account")).text


async def test_logout_with_id_token_hint_redirects_to_allowlisted_uri(make_env: Any) -> None:
    async with make_env() as env:
        token = await redeem(env, location_params(await env.authorize(STUDENT))["code"])
        response = await env.browser.get(
            f"{GW}/logout",
            params={
                "id_token_hint": token["id_token"],
                "state": "bye",
                "post_logout_redirect_uri": "https://rocketlit.test/logged-out",
            },
        )
        assert response.status_code == 303
        assert response.headers["location"] == "https://rocketlit.test/logged-out?state=bye"
        assert "not logged in" in (await env.browser.get(f"{GW}/account")).text
        userinfo = await env.browser.get(
            f"{GW}/userinfo", headers={"Authorization": f"Bearer {token['access_token']}"}
        )
        assert userinfo.status_code == 401


async def test_logout_without_hint_needs_a_confirmed_post(make_env: Any) -> None:
    async with make_env() as env:
        await env.authorize(STUDENT)
        page = await env.browser.get(f"{GW}/logout")
        assert page.status_code == 200
        assert "Log out of" in page.text
        assert "signed in" not in (await env.browser.get(f"{GW}/account")).text
        forged = await env.browser.post(f"{GW}/logout", data={"csrf": "guess"})
        assert "Log out of" in forged.text  # still just the confirmation page
        assert "Ada Lovelace" in (await env.browser.get(f"{GW}/account")).text
        csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
        done = await env.browser.post(f"{GW}/logout", data={"csrf": csrf})
        assert "You are logged out" in done.text
        assert "not logged in" in (await env.browser.get(f"{GW}/account")).text
