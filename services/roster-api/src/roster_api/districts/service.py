from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from roster_api import audit
from roster_api.districts.schemas import (
    DistrictCreate,
    DistrictPublic,
    DistrictUpdate,
    LicensePublic,
    SyncSettings,
)
from roster_api.errors import Conflict, district_not_found
from roster_api.models import District, License, utcnow
from roster_api.notices import store as notice_store
from roster_shared.contracts import Product
from roster_shared.errors import ErrorCode

SYNC_FIELDS = tuple(SyncSettings.model_fields)


def to_public(*, session: Session, district: District, reveal_secret: bool = False) -> DistrictPublic:
    """`reveal_secret` for the one answer that generated the webhook secret (it is never shown again)."""
    notices = notice_store.load(session=session, district_id=district.id)
    secret = notices.webhook_secret if notices is not None and reveal_secret else None
    licenses = session.exec(select(License).where(License.district_id == district.id)).all()
    return DistrictPublic(
        id=district.id,
        name=district.name,
        clever_district_id=district.clever_district_id,
        licenses={
            Product(lic.product): LicensePublic(seats=lic.seats, enforce_seats=lic.enforce_seats)
            for lic in licenses
        },
        sync=SyncSettings(**{name: getattr(district, name) for name in SYNC_FIELDS}),
        notices=notice_store.to_public(notices, new_secret=secret),
        created_at=district.created_at,
        updated_at=district.updated_at,
    )


def _check_clever_district_free(*, session: Session, clever_district_id: str, district_id: str) -> None:
    other = session.exec(select(District).where(District.clever_district_id == clever_district_id)).first()
    if other is not None and other.id != district_id:
        raise Conflict(
            "That Clever district is already linked to another district.",
            code=ErrorCode.CLEVER_DISTRICT_TAKEN,
            details=[{"field": "clever_district_id", "message": "already linked"}],
        )


def has_webhook_secret(*, session: Session, district_id: str) -> bool:
    notices = notice_store.load(session=session, district_id=district_id)
    return notices is not None and bool(notices.webhook_secret)


def rotate_webhook_secret(*, session: Session, district: District, actor: str) -> tuple[str, datetime]:
    """A new secret for the district's webhook, returned once; the old one stops working at once."""
    secret, rotated_at = notice_store.rotate_secret(session=session, district_id=district.id)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="district.webhook_secret_rotate",
        district_id=district.id,
        target=district.id,
    )
    return secret, rotated_at


def create_district(
    *, session: Session, data: DistrictCreate, actor: str, allow_http_webhook: bool = False
) -> District:
    if session.get(District, data.id) is not None:
        raise Conflict(
            f"A district with id {data.id!r} already exists.",
            code=ErrorCode.DISTRICT_EXISTS,
            details=[{"field": "id", "message": "already exists"}],
        )
    if data.clever_district_id:
        _check_clever_district_free(
            session=session, clever_district_id=data.clever_district_id, district_id=data.id
        )
    district = District(
        id=data.id, name=data.name, clever_district_id=data.clever_district_id, **data.sync.model_dump()
    )
    session.add(district)
    for product, lic in data.licenses.items():
        session.add(
            License(
                district_id=data.id, product=product.value, seats=lic.seats, enforce_seats=lic.enforce_seats
            )
        )
    try:
        session.flush()
    except sa.exc.IntegrityError as exc:  # a concurrent create of the same slug or Clever district
        raise Conflict(
            "The district conflicts with one created at the same time.", code=ErrorCode.DISTRICT_EXISTS
        ) from exc
    if data.notices.contacts or data.notices.webhook_url:
        notice_store.save(
            session=session, district_id=data.id, data=data.notices, allow_http=allow_http_webhook
        )
        session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="district.create",
        district_id=data.id,
        target=data.id,
        details={"licenses": {p.value: lic.model_dump() for p, lic in data.licenses.items()}},
    )
    return district


def get_district(*, session: Session, district_id: str) -> District:
    district = session.get(District, district_id)
    if district is None:
        raise district_not_found(district_id)
    return district


def list_districts(
    *, session: Session, only: str | None, limit: int, offset: int
) -> tuple[list[District], int]:
    query = select(District)
    count = select(func.count()).select_from(District)
    if only is not None:
        query = query.where(District.id == only)
        count = count.where(District.id == only)
    total = session.exec(count).one()
    rows = session.exec(query.order_by(col(District.id)).limit(limit).offset(offset)).all()
    return list(rows), total


def update_district(
    *,
    session: Session,
    district: District,
    data: DistrictUpdate,
    actor: str,
    allow_http_webhook: bool = False,
) -> District:
    changes: dict[str, Any] = {}
    given = data.model_fields_set
    if "name" in given and data.name is not None:
        changes["name"] = data.name
        district.name = data.name
    if "clever_district_id" in given:
        if data.clever_district_id:
            _check_clever_district_free(
                session=session, clever_district_id=data.clever_district_id, district_id=district.id
            )
        changes["clever_district_id"] = data.clever_district_id
        district.clever_district_id = data.clever_district_id
    if data.sync is not None:
        for name, value in data.sync.model_dump(exclude_unset=True).items():
            if value is not None:
                setattr(district, name, value)
                changes[name] = value
    if data.licenses is not None:
        for product, lic in data.licenses.items():
            existing = session.get(License, (district.id, product.value))
            if lic is None:
                if existing is not None:
                    session.delete(existing)
                changes[f"license.{product.value}"] = None
                continue
            if existing is None:
                existing = License(district_id=district.id, product=product.value, seats=lic.seats)
            existing.seats = lic.seats
            existing.enforce_seats = lic.enforce_seats
            session.add(existing)
            changes[f"license.{product.value}"] = lic.model_dump()
    if data.notices is not None:
        noticed = notice_store.save(
            session=session, district_id=district.id, data=data.notices, allow_http=allow_http_webhook
        )
        changes |= noticed
    district.updated_at = utcnow()
    session.add(district)
    try:
        session.flush()
    except sa.exc.IntegrityError as exc:
        raise Conflict(
            "The change conflicts with another district.", code=ErrorCode.CLEVER_DISTRICT_TAKEN
        ) from exc
    audit.record(
        session=session,
        actor=actor,
        action="district.update",
        district_id=district.id,
        target=district.id,
        details=changes,
    )
    return district
