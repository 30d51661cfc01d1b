"""The Clever leg's back channel: redeem a code once (HTTP Basic, JSON body, same redirect_uri), read
`/v3.0/me` then `/v3.0/users/{id}` (name, email, role and the role's `sis_id`), and forget Clever's
token. Redirects are never followed and every call has a timeout; no code, token or email is logged."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx

from roster_shared.contracts import CLEVER_ID_PATTERN, CleverRole
from sso_gateway.settings import ProductSettings, Settings

CLEVER_ID_RE = re.compile(CLEVER_ID_PATTERN)
# a person with several roles logs in with the most specific one roster-api knows how to fit
ROLE_ORDER = (
    CleverRole.STUDENT,
    CleverRole.TEACHER,
    CleverRole.DISTRICT_ADMIN,
    CleverRole.STAFF,
    CleverRole.CONTACT,
)


class CleverFailure(StrEnum):
    REJECTED = "clever_rejected"  # Clever refused the code (expired, reused) or the client
    UNAVAILABLE = "clever_unavailable"  # network error, timeout, 5xx
    BAD_RESPONSE = "clever_bad_response"  # answered, but not with what the docs promise


class CleverError(Exception):
    def __init__(self, kind: CleverFailure, detail: str) -> None:
        super().__init__(f"{kind.value}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True)
class CleverIdentity:
    user_id: str
    district_id: str
    role: CleverRole
    email: str | None
    given_name: str
    family_name: str
    # the district's own id (`roles.<role>.sis_id`), when the district syncs one
    sis_id: str | None = None


async def identify(
    http: httpx.AsyncClient,
    settings: Settings,
    product: ProductSettings,
    code: str,
    timings: dict[str, float],
) -> CleverIdentity:
    started = time.perf_counter()
    try:
        token = await _exchange(http, settings, product, code)
        me = await _get(http, f"{settings.clever_api_url.rstrip('/')}/v3.0/me", token)
        data = _obj(me.get("data"))
        user_id = str(data.get("id", ""))
        if not CLEVER_ID_RE.match(user_id) or data.get("type") not in ("user", None):
            raise CleverError(CleverFailure.BAD_RESPONSE, "/v3.0/me has no user id")
        user = await _get(http, f"{settings.clever_api_url.rstrip('/')}/v3.0/users/{user_id}", token)
    finally:
        timings["clever"] = timings.get("clever", 0.0) + time.perf_counter() - started
    record = _obj(user.get("data"))
    roles = _obj(record.get("roles"))
    role = next((r for r in ROLE_ORDER if r.value in roles), None)
    if role is None:
        raise CleverError(CleverFailure.BAD_RESPONSE, "user has no known role")
    name = _obj(record.get("name"))
    email = record.get("email")
    sis_id = _obj(roles.get(role.value)).get("sis_id")
    return CleverIdentity(
        user_id=user_id,
        district_id=str(record.get("district") or data.get("district") or ""),
        role=role,
        email=email if isinstance(email, str) and email.strip() else None,
        given_name=str(name.get("first") or ""),
        family_name=str(name.get("last") or ""),
        sis_id=_sis_id(sis_id),
    )


async def _exchange(http: httpx.AsyncClient, settings: Settings, product: ProductSettings, code: str) -> str:
    try:
        response = await http.post(
            settings.clever_token_url,
            auth=(product.clever_client_id, product.clever_client_secret.get_secret_value()),
            json={
                "code": code,
                "grant_type": "authorization_code",
                "redirect_uri": product.clever_redirect_uri,
            },
            headers={"Accept": "application/json"},
        )
    except httpx.HTTPError as exc:
        raise CleverError(CleverFailure.UNAVAILABLE, f"token endpoint: {type(exc).__name__}") from exc
    if response.status_code >= 500:
        raise CleverError(CleverFailure.UNAVAILABLE, f"token endpoint answered {response.status_code}")
    if response.status_code != 200:
        raise CleverError(CleverFailure.REJECTED, f"token endpoint answered {response.status_code}")
    token = _json(response).get("access_token")
    if not isinstance(token, str) or not token:
        raise CleverError(CleverFailure.BAD_RESPONSE, "token response without access_token")
    return token


async def _get(http: httpx.AsyncClient, url: str, token: str) -> dict[str, Any]:
    try:
        response = await http.get(
            url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}
        )
    except httpx.HTTPError as exc:
        raise CleverError(CleverFailure.UNAVAILABLE, f"API: {type(exc).__name__}") from exc
    if response.status_code >= 500 or response.status_code == 429:
        raise CleverError(CleverFailure.UNAVAILABLE, f"API answered {response.status_code}")
    if response.status_code != 200:
        raise CleverError(CleverFailure.BAD_RESPONSE, f"API answered {response.status_code}")
    return _json(response)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError as exc:
        raise CleverError(CleverFailure.BAD_RESPONSE, "not JSON") from exc
    if not isinstance(data, dict):
        raise CleverError(CleverFailure.BAD_RESPONSE, "not a JSON object")
    return data


def _sis_id(value: Any) -> str | None:
    """The district's own id, when it is one: a non-empty string that fits the resolve contract."""
    if not isinstance(value, str) or not value.strip() or len(value) > 255:
        return None
    return value.strip()


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
