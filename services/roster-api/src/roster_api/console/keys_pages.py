"""Support only: the API keys of internal tools (the gateway, scripts): list, create (the secret is
shown on the answer page this once, never in an address or a log) and revoke. Every action is audited
with the support person's name, like `roster-api keys` does with "cli"."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import Response
from sqlmodel import Session

from roster_api import audit
from roster_api.auth import Scope, create_api_key, list_api_keys, revoke_api_key
from roster_api.console.web import ConsoleRoute, FormDep, SupportDep, redirect, render, text
from roster_api.deps import KeyCacheDep, SessionDep
from roster_api.errors import Invalid

router = APIRouter(route_class=ConsoleRoute)
KeyId = Annotated[str, PathParam(max_length=64)]
SCOPE_NOTES = {
    Scope.ADMIN: "everything, and the console",
    Scope.ROSTER_READ: "read rosters",
    Scope.ROSTER_WRITE: "change rosters and import",
    Scope.RESOLVE: "resolve logins (the SSO gateway)",
}


def _keys_page(
    request: Request,
    session: Session,
    *,
    created: Any = None,
    raw_key: str | None = None,
    field_errors: Mapping[str, str] | None = None,
    entered: Mapping[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "keys.html",
        {
            "title": "API keys",
            "nav": "keys",
            "keys": list_api_keys(session=session),
            "scopes": [(s.value, SCOPE_NOTES.get(s, "")) for s in Scope],
            "created": created,
            "raw_key": raw_key,
            "errors": list((field_errors or {}).values()),
            "field_errors": field_errors or {},
            "entered": entered or {},
        },
        status_code=status_code,
    )


@router.get("/keys", include_in_schema=False)
def keys_page(request: Request, console: SupportDep, session: SessionDep) -> Response:
    return _keys_page(request, session)


def _scopes(form: Mapping[str, Any]) -> list[str]:
    getlist = getattr(form, "getlist", None)
    values = getlist("scopes") if getlist is not None else [form.get("scopes")]
    return [v.strip()[:32] for v in values[:10] if isinstance(v, str) and v.strip()]


@router.post("/keys", include_in_schema=False)
def create_key(request: Request, console: SupportDep, session: SessionDep, form: FormDep) -> Response:
    """The new key's secret is in this answer's page only: not stored, not redirected to, not logged."""
    name = text(form, "name", limit=200)
    scopes = _scopes(form)
    district_id = text(form, "district_id", limit=64).lower()
    entered = {"name": name, "scopes": scopes, "district_id": district_id}
    try:
        key, raw = create_api_key(session=session, name=name, scopes=scopes, district_id=district_id or None)
    except Invalid as exc:
        field = next((str(d.get("field")) for d in exc.details if d.get("field")), "name")
        return _keys_page(
            request, session, field_errors={field: exc.message}, entered=entered, status_code=422
        )
    audit.record(
        session=session,
        actor=console.actor,
        action="api_key.create",
        district_id=key.district_id,
        target=key.id,
        details={"name": key.name, "scopes": key.scopes},
    )
    return _keys_page(request, session, created=key, raw_key=raw)


@router.post("/keys/{key_id}/revoke", include_in_schema=False)
def revoke_key(
    key_cache: KeyCacheDep, console: SupportDep, session: SessionDep, form: FormDep, key_id: KeyId
) -> Response:
    key, revoked = revoke_api_key(session=session, key_id=key_id)
    if not revoked:
        return redirect("/console/keys", notice=f"Key {key.name} was already revoked.")
    audit.record(
        session=session,
        actor=console.actor,
        action="api_key.revoke",
        district_id=key.district_id,
        target=key.id,
        details={"name": key.name},
    )
    # this process refuses it at once; other replicas within a second (PostgreSQL NOTIFY)
    key_cache.clear()
    return redirect("/console/keys", notice=f"Key {key.name} revoked: it no longer works.")
