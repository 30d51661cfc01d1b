"""Console sessions as signed cookies: who signed in, which district they are bound to, a CSRF token and
two clocks (idle and absolute). Nothing secret is inside: the API key is never stored, only its id, and a
key revoked after sign-in ends the session at the next request."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass, replace

from roster_api.settings import Environment, Settings

IDLE_SECONDS = 30 * 60
ABSOLUTE_SECONDS = 12 * 60 * 60
# the cookie is re-signed (idle clock moved on) at most this often, not on every request
REFRESH_SECONDS = 60
PRE_COOKIE_SECONDS = 30 * 60


@dataclass(frozen=True)
class ConsoleSession:
    kind: str  # "key" (support or a district-bound key) | "clever" (a district admin through Clever)
    subject: str  # the API key id, or the Clever user id
    actor: str  # who the audit log names: the key's name, or "clever:<user id>"
    district_id: str | None  # None: support, sees every district
    csrf: str
    issued: float
    seen: float

    @property
    def is_support(self) -> bool:
        return self.district_id is None

    def sees(self, district_id: str) -> bool:
        return self.district_id is None or self.district_id == district_id


def new_session(*, kind: str, subject: str, actor: str, district_id: str | None) -> ConsoleSession:
    now = time.time()
    return ConsoleSession(
        kind=kind,
        subject=subject,
        actor=actor,
        district_id=district_id,
        csrf=secrets.token_urlsafe(24),
        issued=now,
        seen=now,
    )


def cookie_name(settings: Settings) -> str:
    # browsers keep a __Host- cookie only when it is Secure, which plain-http development cannot be
    if settings.environment is Environment.DEVELOPMENT:
        return "console_session"
    return "__Host-console_session"


def pre_cookie_name(settings: Settings) -> str:
    if settings.environment is Environment.DEVELOPMENT:
        return "console_pre"
    return "__Host-console_pre"


def secure_cookies(settings: Settings) -> bool:
    return settings.environment is not Environment.DEVELOPMENT


def _key(settings: Settings, purpose: str) -> bytes:
    pepper = settings.hash_pepper.get_secret_value().encode()
    return hmac.new(pepper, f"console-{purpose}".encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(settings: Settings, purpose: str, payload: dict[str, object]) -> str:
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    mac = hmac.new(_key(settings, purpose), body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def unsign(settings: Settings, purpose: str, value: str) -> dict[str, object] | None:
    body, _, mac = value.partition(".")
    if not body or not mac or len(value) > 4096:
        return None
    expected = _b64(hmac.new(_key(settings, purpose), body.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected, mac):
        return None
    try:
        payload = json.loads(_unb64(body))
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def encode(settings: Settings, session: ConsoleSession) -> str:
    return sign(settings, "session", asdict(session))


def decode(settings: Settings, value: str | None, *, now: float | None = None) -> ConsoleSession | None:
    """The session in the cookie, or None when it is missing, forged, idle too long or too old."""
    if not value:
        return None
    payload = unsign(settings, "session", value)
    if payload is None:
        return None
    try:
        session = ConsoleSession(**payload)  # type: ignore[arg-type]
    except TypeError:
        return None
    now = time.time() if now is None else now
    if now - session.seen > IDLE_SECONDS or now - session.issued > ABSOLUTE_SECONDS:
        return None
    return session


def touched(session: ConsoleSession, *, now: float | None = None) -> ConsoleSession | None:
    """The session with its idle clock moved on, or None when the cookie need not be re-sent yet."""
    now = time.time() if now is None else now
    if now - session.seen < REFRESH_SECONDS:
        return None
    return replace(session, seen=now)


def csrf_matches(session_token: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(session_token.encode(), (given or "").encode())
