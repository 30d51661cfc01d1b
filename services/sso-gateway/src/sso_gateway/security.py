"""Response headers, cookies and the small checks every flow shares."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# No form-action: browsers apply it to the redirect after a form POST, which would block the logout
# confirmation's 303 to the frontend's post-logout URI; our only forms post to ourselves anyway.
CSP = "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; frame-ancestors 'none'"
# JWKS and discovery may be cached by clients; everything else is an auth page or token response.
CACHEABLE = {"/.well-known/openid-configuration", "/jwks.json", "/static/gateway.css"}


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cacheable = scope.get("path") in CACHEABLE

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                extra = [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                ]
                if self.hsts:
                    extra.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
                if b"cache-control" not in names:
                    extra.append((b"cache-control", b"public, max-age=300" if cacheable else b"no-store"))
                    if not cacheable:
                        extra.append((b"pragma", b"no-cache"))
                message["headers"] = headers + extra
            await send(message)

        await self.app(scope, receive, wrapped)


class Cookies:
    """`__Host-` + Secure outside development; HttpOnly, SameSite=Lax (the return from Clever is a
    cross-site top-level GET, which Strict would strip), Path=/, no Domain, everywhere."""

    def __init__(self, *, development: bool) -> None:
        self.secure = not development
        prefix = "" if development else "__Host-"
        self.session = prefix + "sso_session"
        self.browser = prefix + "sso_browser"
        self.restart = prefix + "sso_restart"

    def set(self, response: Response, name: str, value: str, *, max_age: int | None = None) -> None:
        response.set_cookie(
            name, value, max_age=max_age, path="/", secure=self.secure, httponly=True, samesite="lax"
        )

    def clear(self, response: Response, name: str) -> None:
        response.delete_cookie(name, path="/", secure=self.secure, httponly=True, samesite="lax")


def new_secret() -> str:
    """256 bits from the CSPRNG, URL-safe."""
    return secrets.token_urlsafe(32)


def digest(value: str) -> str:
    """Store keys for bearer secrets (codes, tokens, session ids) are their hashes, so a copy of the
    store cannot be replayed."""
    return hashlib.sha256(value.encode()).hexdigest()


def pkce_matches(verifier: str, challenge: str) -> bool:
    if not 43 <= len(verifier) <= 128:
        return False
    computed = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return hmac.compare_digest(computed, challenge)


def add_query(url: str, params: dict[str, str]) -> str:
    from urllib.parse import urlencode

    return url + ("&" if "?" in url else "?") + urlencode(params)
