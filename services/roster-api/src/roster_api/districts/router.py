from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from roster_api.deps import (
    AdminDep,
    AdminDistrictDep,
    KeyCacheDep,
    ReadDep,
    ReadDistrictDep,
    SessionDep,
    SettingsDep,
)
from roster_api.districts import purge, service
from roster_api.districts.schemas import DistrictCreate, DistrictPublic, DistrictUpdate
from roster_api.errors import Forbidden, Invalid, responses
from roster_api.notices.schemas import WebhookSecretPublic
from roster_api.pagination import Page, PageDep
from roster_api.settings import Environment
from roster_shared.errors import ErrorCode

router = APIRouter(prefix="/v1/districts", tags=["districts"])
disposals_router = APIRouter(prefix="/v1/disposals", tags=["districts"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=responses(409),
)
def create_district(
    data: DistrictCreate, session: SessionDep, principal: AdminDep, settings: SettingsDep
) -> DistrictPublic:
    """With `notices.webhook_url`, the answer carries `notices.webhook_secret`, shown this once."""
    if principal.district_id is not None:
        raise Forbidden("A key bound to one district cannot create districts.")
    district = service.create_district(
        session=session,
        data=data,
        actor=principal.name,
        allow_http_webhook=settings.environment is Environment.DEVELOPMENT,
    )
    return service.to_public(session=session, district=district, reveal_secret=True)


@router.get("", responses=responses())
def list_districts(session: SessionDep, principal: ReadDep, page: PageDep) -> Page[DistrictPublic]:
    rows, total = service.list_districts(
        session=session, only=principal.district_id, limit=page.limit, offset=page.offset
    )
    items = [service.to_public(session=session, district=d) for d in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/{district_id}", responses=responses(404))
def get_district(district: ReadDistrictDep, session: SessionDep) -> DistrictPublic:
    return service.to_public(session=session, district=district)


@router.patch(
    "/{district_id}",
    responses=responses(404, 409),
)
def update_district(
    data: DistrictUpdate,
    district: AdminDistrictDep,
    session: SessionDep,
    principal: AdminDep,
    settings: SettingsDep,
) -> DistrictPublic:
    """A webhook set for the first time gets a secret: `notices.webhook_secret`, in this answer only."""
    had_secret = service.has_webhook_secret(session=session, district_id=district.id)
    district = service.update_district(
        session=session,
        district=district,
        data=data,
        actor=principal.name,
        allow_http_webhook=settings.environment is Environment.DEVELOPMENT,
    )
    return service.to_public(session=session, district=district, reveal_secret=not had_secret)


@router.post("/{district_id}/notices/webhook-secret", responses=responses(404, 409))
def rotate_webhook_secret(
    district: AdminDistrictDep, session: SessionDep, principal: AdminDep
) -> WebhookSecretPublic:
    """A new secret for signing the district's webhook deliveries, shown this once; the old one stops
    working at once. 409 when the district has no webhook."""
    secret, rotated_at = service.rotate_webhook_secret(
        session=session, district=district, actor=principal.name
    )
    return WebhookSecretPublic(webhook_secret=secret, rotated_at=rotated_at)


@router.delete("/{district_id}", responses=responses(404, 409))
def purge_district(
    district: AdminDistrictDep,
    session: SessionDep,
    principal: AdminDep,
    settings: SettingsDep,
    key_cache: KeyCacheDep,
    confirm: Annotated[str | None, Query(max_length=64, description="The district id again")] = None,
) -> purge.DisposalPublic:
    """Delete everything of the district (roster, accounts, imports and their files, login attempts,
    keys and SFTP credentials) and return the disposition record. Irreversible: `confirm` must repeat
    the district id."""
    if principal.district_id is not None:
        raise Forbidden("A key bound to one district cannot purge districts.")
    if confirm != district.id:
        raise Invalid(
            f"Purging deletes all of {district.id!r}; repeat its id as `?confirm={district.id}`.",
            field="confirm",
            code=ErrorCode.CONFIRMATION_REQUIRED,
        )
    disposal = purge.purge_district(
        session=session, district=district, data_dir=settings.data_dir, actor=principal.name
    )
    # the district's bound keys are gone: drop cached verdicts now rather than in CACHE_SECONDS
    key_cache.clear()
    return purge.DisposalPublic.model_validate(disposal, from_attributes=True)


@disposals_router.get("", responses=responses())
def list_disposals(session: SessionDep, principal: AdminDep, page: PageDep) -> Page[purge.DisposalPublic]:
    """Disposition records of purged districts, newest first."""
    items, total = purge.list_disposals(
        session=session, only=principal.district_id, limit=page.limit, offset=page.offset
    )
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)
