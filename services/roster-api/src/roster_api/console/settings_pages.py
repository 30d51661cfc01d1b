"""Settings: sync (schedule, holds, the row policy), result notices (contacts, webhook), SFTP login
(create, rotate, keys, host key), and for support only licenses, the Clever link and the district purge."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import Response
from pydantic import ValidationError
from sqlmodel import Session, select

from roster_api import audit
from roster_api.console.web import (
    ConsoleDep,
    ConsoleRoute,
    DistrictDep,
    FormDep,
    SupportDep,
    redirect,
    render,
    text,
)
from roster_api.deps import KeyCacheDep, SessionDep, SettingsDep
from roster_api.districts import purge
from roster_api.districts import service as districts
from roster_api.districts.schemas import DistrictCreate, DistrictUpdate, LicenseIn, SyncSettingsUpdate
from roster_api.errors import Invalid
from roster_api.intake import credentials
from roster_api.intake.hostkey import host_key_info
from roster_api.models import District, License
from roster_api.notices import store as notice_store
from roster_api.notices.schemas import MAX_CONTACTS, NoticeSettingsUpdate
from roster_api.settings import Environment
from roster_shared.contracts import Product
from roster_shared.errors import ErrorCode

router = APIRouter(route_class=ConsoleRoute)
SYNC_FIELDS = (
    "nightly_time",
    "timezone",
    "nightly_file_name",
    "hold_deactivate_pct",
    "hold_update_pct",
    "hold_expire_days",
    "on_row_errors",
)

SYNC_LABELS = {
    "nightly_time": "Nightly sync time",
    "timezone": "Time zone",
    "nightly_file_name": "Nightly file name",
    "hold_deactivate_pct": "Hold on deactivations",
    "hold_update_pct": "Hold on updates",
    "hold_expire_days": "Days before a hold expires",
    "on_row_errors": "Rows with errors",
}
NOTICE_LABELS = {"contacts": "Contacts", "webhook_url": "Webhook URL"}
CredentialId = Annotated[str, PathParam(max_length=32)]


def _settings_page(
    request: Request,
    session: Session,
    district: District,
    settings: Any,
    *,
    password: str | None = None,
    errors: list[str] | None = None,
    field_errors: Mapping[str, str] | None = None,
    entered: Mapping[str, str] | None = None,
    webhook_secret: str | None = None,
    status_code: int = 200,
) -> Response:
    """`field_errors` are shown by their fields (and listed on top); `entered` refills a form that was
    not saved; `webhook_secret` is a new secret, shown this once."""
    creds = credentials.list_credentials(session=session, district_id=district.id)
    live = [c for c in creds if c.revoked_at is None]
    keys = [credentials.key_fingerprint(k) for k in live[0].public_keys] if live else []
    return render(
        request,
        "settings.html",
        {
            "title": "Settings",
            "district": district,
            "nav": "settings",
            "credential": live[0] if live else None,
            "keys": keys,
            "host_key": host_key_info(settings),
            "sftp_host": settings.sftp_public_host,
            "sftp_port": settings.sftp_port,
            "password": password,
            "errors": [*(errors or []), *(field_errors or {}).values()],
            "field_errors": field_errors or {},
            "entered": entered or {},
            "notices": notice_store.to_public(notice_store.load(session=session, district_id=district.id)),
            "max_contacts": MAX_CONTACTS,
            "webhook_secret": webhook_secret,
            "licenses": session.exec(select(License).where(License.district_id == district.id)).all(),
            "products": [p.value for p in Product],
        },
        status_code=status_code,
    )


@router.get("/d/{district_id}/settings", include_in_schema=False)
def settings_page(
    request: Request, district: DistrictDep, session: SessionDep, settings: SettingsDep
) -> Response:
    return _settings_page(request, session, district, settings)


def _messages(exc: ValidationError) -> list[str]:
    return [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]


def _by_field(exc: ValidationError, labels: Mapping[str, str]) -> dict[str, str]:
    """The first problem of each form field, in words: "Contacts, entry 2: must be an email ..."."""
    found: dict[str, str] = {}
    for e in exc.errors():
        name = str(e["loc"][0]) if e["loc"] else ""
        entry = (
            f", entry {int(e['loc'][1]) + 1}" if len(e["loc"]) > 1 and isinstance(e["loc"][1], int) else ""
        )
        message = str(e["msg"]).removeprefix("Value error, ")
        found.setdefault(name, f"{labels.get(name, name)}{entry}: {message}")
    return found


@router.post("/d/{district_id}/settings/sync", include_in_schema=False)
def save_sync(
    request: Request,
    district: DistrictDep,
    session: SessionDep,
    settings: SettingsDep,
    console: ConsoleDep,
    form: FormDep,
) -> Response:
    try:
        given = {name: text(form, name, limit=64) for name in SYNC_FIELDS}
        sync = SyncSettingsUpdate.model_validate(
            {
                **{k: v for k, v in given.items() if v},
                "import_on_upload": form.get("import_on_upload") == "on",
            }
        )
    except ValidationError as exc:
        return _settings_page(
            request,
            session,
            district,
            settings,
            field_errors=_by_field(exc, SYNC_LABELS),
            entered=given,
            status_code=422,
        )
    districts.update_district(
        session=session, district=district, data=DistrictUpdate(sync=sync), actor=console.actor
    )
    return redirect(f"/console/d/{district.id}/settings", notice="Sync settings saved.")


@router.post("/d/{district_id}/settings/notices", include_in_schema=False)
def save_notices(
    request: Request,
    district: DistrictDep,
    session: SessionDep,
    settings: SettingsDep,
    console: ConsoleDep,
    form: FormDep,
) -> Response:
    """Contacts (one address a line) and the webhook URL (empty: none). A webhook set for the first
    time gets its signing secret, shown on the page this once."""
    entered = {
        "contacts": text(form, "contacts", limit=6000),
        "webhook_url": text(form, "webhook_url", limit=2100),
    }
    contacts = [c for c in re.split(r"[\s,;]+", entered["contacts"]) if c]
    before = notice_store.load(session=session, district_id=district.id)
    had_secret = before is not None and bool(before.webhook_secret)
    try:
        data = NoticeSettingsUpdate(contacts=contacts, webhook_url=entered["webhook_url"] or None)
        districts.update_district(
            session=session,
            district=district,
            data=DistrictUpdate(notices=data),
            actor=console.actor,
            allow_http_webhook=settings.environment is Environment.DEVELOPMENT,
        )
    except ValidationError as exc:
        errors = _by_field(exc, NOTICE_LABELS)
    except Invalid as exc:  # the webhook is not https
        errors = {"webhook_url": f"Webhook URL: {exc.message}"}
    else:
        after = notice_store.load(session=session, district_id=district.id)
        if not had_secret and after is not None and after.webhook_secret:
            return _settings_page(request, session, district, settings, webhook_secret=after.webhook_secret)
        return redirect(f"/console/d/{district.id}/settings", notice="Notice settings saved.")
    return _settings_page(
        request, session, district, settings, field_errors=errors, entered=entered, status_code=422
    )


@router.post("/d/{district_id}/settings/notices/secret", include_in_schema=False)
def rotate_webhook_secret(
    request: Request,
    district: DistrictDep,
    session: SessionDep,
    settings: SettingsDep,
    console: ConsoleDep,
    form: FormDep,
) -> Response:
    """A new signing secret for the webhook, shown this once; the old one stops working at once."""
    secret, _ = districts.rotate_webhook_secret(session=session, district=district, actor=console.actor)
    return _settings_page(request, session, district, settings, webhook_secret=secret)


@router.post("/d/{district_id}/settings/sftp", include_in_schema=False)
def create_sftp(
    request: Request,
    district: DistrictDep,
    session: SessionDep,
    settings: SettingsDep,
    console: ConsoleDep,
    form: FormDep,
) -> Response:
    _, password = credentials.create_credential(
        session=session, district=district, password=True, public_keys=[], actor=console.actor
    )
    return _settings_page(request, session, district, settings, password=password)


@router.post("/d/{district_id}/settings/sftp/{credential_id}/rotate", include_in_schema=False)
def rotate_sftp(
    request: Request,
    district: DistrictDep,
    session: SessionDep,
    settings: SettingsDep,
    console: ConsoleDep,
    form: FormDep,
    credential_id: CredentialId,
) -> Response:
    _, password = credentials.rotate_password(
        session=session, district_id=district.id, credential_id=credential_id, actor=console.actor
    )
    return _settings_page(request, session, district, settings, password=password)


@router.post("/d/{district_id}/settings/sftp/{credential_id}/keys", include_in_schema=False)
def add_key(
    district: DistrictDep,
    session: SessionDep,
    console: ConsoleDep,
    form: FormDep,
    credential_id: CredentialId,
) -> Response:
    credentials.add_public_key(
        session=session,
        district_id=district.id,
        credential_id=credential_id,
        public_key=text(form, "public_key", limit=20_000),
        actor=console.actor,
    )
    return redirect(f"/console/d/{district.id}/settings", notice="Key added.")


@router.post("/d/{district_id}/settings/sftp/{credential_id}/keys/remove", include_in_schema=False)
def remove_key(
    district: DistrictDep,
    session: SessionDep,
    console: ConsoleDep,
    form: FormDep,
    credential_id: CredentialId,
) -> Response:
    credentials.remove_public_key(
        session=session,
        district_id=district.id,
        credential_id=credential_id,
        fingerprint=text(form, "fingerprint", limit=200),
        actor=console.actor,
    )
    return redirect(f"/console/d/{district.id}/settings", notice="Key removed.")


# --- support only -------------------------------------------------------------------------------


def _licenses(form: Mapping[str, Any]) -> dict[Product, LicenseIn | None]:
    result: dict[Product, LicenseIn | None] = {}
    for product in Product:
        seats = text(form, f"seats_{product.value}", limit=9)
        if not seats:
            result[product] = None
            continue
        if not seats.isdigit():
            raise Invalid(
                f"Seats for {product.value} must be a whole number.", field=f"seats_{product.value}"
            )
        result[product] = LicenseIn(
            seats=int(seats), enforce_seats=form.get(f"enforce_{product.value}") == "on"
        )
    return result


@router.post("/d/{district_id}/settings/district", include_in_schema=False)
def save_district(
    request: Request,
    district: DistrictDep,
    session: SessionDep,
    settings: SettingsDep,
    console: SupportDep,
    form: FormDep,
) -> Response:
    clever = text(form, "clever_district_id", limit=24).lower() or None
    try:
        data = DistrictUpdate(clever_district_id=clever, licenses=_licenses(form))
    except ValidationError as exc:
        return _settings_page(request, session, district, settings, errors=_messages(exc), status_code=422)
    districts.update_district(session=session, district=district, data=data, actor=console.actor)
    staff = form.get("console_staff") == "on"
    if staff != district.console_staff:
        district.console_staff = staff
        session.add(district)
        audit.record(
            session=session,
            actor=console.actor,
            action="district.update",
            district_id=district.id,
            target=district.id,
            details={"console_staff": staff},
        )
    return redirect(f"/console/d/{district.id}/settings", notice="Licenses and Clever link saved.")


@router.post("/d/{district_id}/purge", include_in_schema=False)
def purge_district(
    key_cache: KeyCacheDep,
    district: DistrictDep,
    session: SessionDep,
    settings: SettingsDep,
    console: SupportDep,
    form: FormDep,
) -> Response:
    if text(form, "confirm", limit=64) != district.id:
        raise Invalid(
            f"Type the district id {district.id!r} exactly to purge it.", code=ErrorCode.CONFIRMATION_REQUIRED
        )
    purge.purge_district(session=session, district=district, data_dir=settings.data_dir, actor=console.actor)
    key_cache.clear()
    return redirect("/console/districts", notice=f"District {district.id} was purged.")


@router.post("/districts", include_in_schema=False)
def create_district(request: Request, session: SessionDep, console: SupportDep, form: FormDep) -> Response:
    try:
        data = DistrictCreate(id=text(form, "id", limit=64), name=text(form, "name", limit=200))
    except ValidationError as exc:
        raise Invalid("; ".join(_messages(exc))) from exc
    district = districts.create_district(session=session, data=data, actor=console.actor)
    return redirect(
        f"/console/d/{district.id}/settings", notice="District created: now license it and link it."
    )
