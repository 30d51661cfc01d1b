"""A district's notice settings in `notice_setting`: contacts, webhook URL and the webhook secret.

The secret signs every webhook delivery (HMAC-SHA256), so it is stored as given rather than hashed; it
leaves this module only in the answer of the request that generated it."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlmodel import Session, col, func, select

from roster_api.errors import Conflict, Invalid
from roster_api.models import ImportRun, NoticeDelivery, NoticeSetting, utcnow
from roster_api.notices.schemas import NoticeSettingsIn, NoticeSettingsPublic, NoticeSettingsUpdate


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def load(*, session: Session, district_id: str) -> NoticeSetting | None:
    return session.get(NoticeSetting, district_id)


def to_public(row: NoticeSetting | None, *, new_secret: str | None = None) -> NoticeSettingsPublic:
    if row is None:
        return NoticeSettingsPublic()
    return NoticeSettingsPublic(
        contacts=list(row.contacts),
        webhook_url=row.webhook_url,
        webhook_secret_set=bool(row.webhook_secret),
        webhook_secret_rotated_at=row.secret_rotated_at,
        webhook_secret=new_secret,
    )


def _check_scheme(url: str, *, allow_http: bool) -> None:
    if not allow_http and urlsplit(url).scheme != "https":
        raise Invalid(
            "The webhook URL must start with https:// (notices carry the district's import results).",
            field="notices.webhook_url",
        )


def save(
    *,
    session: Session,
    district_id: str,
    data: NoticeSettingsIn | NoticeSettingsUpdate,
    allow_http: bool,
) -> dict[str, Any]:
    """Applies the fields given; a webhook set for the first time gets a secret. Returns the changes for
    the audit log (counts and hosts, not addresses)."""
    row = session.get(NoticeSetting, district_id) or NoticeSetting(district_id=district_id)
    given = data.model_fields_set
    changes: dict[str, Any] = {}
    if "contacts" in given and data.contacts is not None:
        row.contacts = list(data.contacts)
        changes["notices.contacts"] = len(row.contacts)
    if "webhook_url" in given:
        if data.webhook_url is None:
            row.webhook_url = None
            row.webhook_secret = None
            row.secret_rotated_at = None
        else:
            _check_scheme(data.webhook_url, allow_http=allow_http)
            row.webhook_url = data.webhook_url
            if not row.webhook_secret:
                row.webhook_secret = new_secret()
                row.secret_rotated_at = utcnow()
        changes["notices.webhook_host"] = urlsplit(row.webhook_url).hostname if row.webhook_url else None
    if changes:
        row.updated_at = utcnow()
        session.add(row)
    return changes


def rotate_secret(*, session: Session, district_id: str) -> tuple[str, datetime]:
    row = session.get(NoticeSetting, district_id)
    if row is None or not row.webhook_url:
        raise Conflict("The district has no webhook; set notices.webhook_url first.")
    secret = new_secret()
    row.webhook_secret = secret
    row.secret_rotated_at = utcnow()
    row.updated_at = row.secret_rotated_at
    session.add(row)
    return secret, row.secret_rotated_at


def import_district(*, session: Session, import_id: str) -> str | None:
    """The district of the import, or None when there is no such import."""
    run = session.get(ImportRun, import_id) if len(import_id) <= 32 else None
    return run.district_id if run is not None else None


def list_attempts(
    *, session: Session, district_id: str, reference: str, limit: int, offset: int
) -> tuple[list[NoticeDelivery], int]:
    """The delivery log of one import (or nightly run), oldest attempt first."""
    where = (NoticeDelivery.district_id == district_id, NoticeDelivery.reference == reference)
    total = session.exec(select(func.count()).select_from(NoticeDelivery).where(*where)).one()
    rows = session.exec(
        select(NoticeDelivery)
        .where(*where)
        .order_by(col(NoticeDelivery.created_at), col(NoticeDelivery.id))
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), total
