"""What every console page shares: the signed-in person, district access, CSRF, rendering, and a route
class that turns errors into pages (never the JSON envelope) and adds the security headers."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlmodel import Session, col, select

from roster_api.console import sessions
from roster_api.console.sessions import ConsoleSession
from roster_api.deps import SessionDep
from roster_api.errors import Forbidden, district_not_found
from roster_api.models import ApiKey, District
from roster_api.settings import Settings
from roster_shared.errors import ApiError

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
PAGE_SIZE = 50


class SignInRequired(Exception):
    """No valid session: pages send the browser to the sign-in page."""


class CsrfRejected(Exception):
    """A form without the session's CSRF token."""


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _key_alive(engine_session: Session, key_id: str) -> bool:
    query = select(ApiKey.id).where(ApiKey.id == key_id, col(ApiKey.revoked_at).is_(None))
    return engine_session.exec(query).first() is not None


def district_linked(engine_session: Session, district_id: str | None) -> bool:
    """A Clever sign-in holds while its district is still linked to a Clever district (support can
    unlink it, or purge the district, and the session ends at the next request)."""
    query = select(District.id).where(
        District.id == district_id, col(District.clever_district_id).is_not(None)
    )
    return district_id is not None and engine_session.exec(query).first() is not None


def current(request: Request, session: SessionDep) -> ConsoleSession:
    settings = settings_of(request)
    console = sessions.decode(settings, request.cookies.get(sessions.cookie_name(settings)))
    if console is None:
        raise SignInRequired
    if console.kind == "key" and not _key_alive(session, console.subject):
        raise SignInRequired
    if console.kind == "clever" and not district_linked(session, console.district_id):
        raise SignInRequired
    refreshed = sessions.touched(console)
    if refreshed is not None:
        request.state.console_cookie = sessions.encode(settings, refreshed)
        console = refreshed
    request.state.console = console
    return console


ConsoleDep = Annotated[ConsoleSession, Depends(current)]


def support_only(console: ConsoleDep) -> ConsoleSession:
    if not console.is_support:
        raise Forbidden("Only support staff can do this.")
    return console


SupportDep = Annotated[ConsoleSession, Depends(support_only)]


def district_of(
    district_id: Annotated[str, PathParam(max_length=64)], console: ConsoleDep, session: SessionDep
) -> District:
    """The district in the path; another district's (or a missing one) is 404, never 403."""
    if not console.sees(district_id):
        raise district_not_found(district_id)
    district = session.get(District, district_id)
    if district is None:
        raise district_not_found(district_id)
    return district


DistrictDep = Annotated[District, Depends(district_of)]


async def checked_form(request: Request, console: ConsoleDep) -> Mapping[str, Any]:
    """The posted form, after its CSRF token matched the session's."""
    form = await request.form(max_files=0, max_fields=50)
    token = form.get("csrf_token")
    if not sessions.csrf_matches(console.csrf, token if isinstance(token, str) else None):
        raise CsrfRejected
    return form


FormDep = Annotated[Mapping[str, Any], Depends(checked_form)]


def text(form: Mapping[str, Any], name: str, *, limit: int = 500) -> str:
    value = form.get(name)
    return value.replace("\x00", "").strip()[:limit] if isinstance(value, str) else ""


def render(
    request: Request, template: str, context: Mapping[str, Any] | None = None, *, status_code: int = 200
) -> HTMLResponse:
    console: ConsoleSession | None = getattr(request.state, "console", None)
    full = {
        "console": console,
        "csrf": console.csrf if console else "",
        "notice": _notice(request),
        **(context or {}),
    }
    return templates.TemplateResponse(request, template, full, status_code=status_code)


# A notice ("Sync settings saved.") travels in the redirect's query string, signed: a console URL that
# someone else crafted cannot put its own words in the console's banner. The key comes from the hash
# pepper (`use_notice_key`, at app start), so every process of a deployment accepts the others' notices.
_notice_key = secrets.token_bytes(32)


def use_notice_key(settings: Settings) -> None:
    global _notice_key
    pepper = settings.hash_pepper.get_secret_value().encode()
    _notice_key = hmac.new(pepper, b"console-notice", hashlib.sha256).digest()


def _notice_mac(text: str) -> str:
    return hmac.new(_notice_key, text.encode(), hashlib.sha256).hexdigest()[:32]


def _notice(request: Request) -> str | None:
    text = request.query_params.get("notice") or ""
    mac = request.query_params.get("n") or ""
    return text if text and hmac.compare_digest(_notice_mac(text), mac) else None


def notice_params(text: str) -> dict[str, str]:
    """The query parameters that show `text` as the page's notice."""
    return {"notice": text, "n": _notice_mac(text)}


def redirect(url: str, *, notice: str | None = None) -> RedirectResponse:
    if notice:
        url += ("&" if "?" in url else "?") + urlencode(notice_params(notice))
    return RedirectResponse(url, status_code=303)


def error_page(request: Request, status_code: int, message: str) -> HTMLResponse:
    titles = {403: "Not allowed", 404: "Not found", 409: "Not possible now", 413: "File too large"}
    title = titles.get(status_code, "Something is not right")
    return render(request, "error.html", {"title": title, "message": message}, status_code=status_code)


def _finish(request: Request, response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("Cache-Control", "no-store")
    cookie = getattr(request.state, "console_cookie", None)
    if cookie is not None:
        set_session_cookie(request, response, cookie)
    return response


def set_session_cookie(request: Request, response: Response, value: str | None) -> None:
    settings = settings_of(request)
    name = sessions.cookie_name(settings)
    if value is None:
        response.delete_cookie(name, path="/", secure=sessions.secure_cookies(settings), httponly=True)
        return
    response.set_cookie(
        name,
        value,
        max_age=sessions.ABSOLUTE_SECONDS,
        path="/",
        secure=sessions.secure_cookies(settings),
        httponly=True,
        samesite="lax",
    )


class ConsoleRoute(APIRoute):
    """Errors become HTML pages with the right status; every response gets the console's headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except SignInRequired:
                response = RedirectResponse("/console/login", status_code=303)
                request.state.console_cookie = None
            except CsrfRejected:
                message = (
                    "This form was out of date or not sent from the console. Go back, reload and try again."
                )
                response = error_page(request, 403, message)
            except ApiError as exc:
                response = error_page(request, exc.status_code, exc.message)
            except (RequestValidationError, ValidationError):
                response = error_page(request, 422, "Some of the values sent were not valid.")
            return _finish(request, response)

        return console_handler
