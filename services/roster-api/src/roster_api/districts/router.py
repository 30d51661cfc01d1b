from __future__ import annotations

from fastapi import APIRouter, status

from roster_api.deps import AdminDep, AdminDistrictDep, ReadDep, ReadDistrictDep, SessionDep
from roster_api.districts import service
from roster_api.districts.schemas import DistrictCreate, DistrictPublic, DistrictUpdate
from roster_api.errors import Forbidden, responses
from roster_api.pagination import Page, PageDep

router = APIRouter(prefix="/v1/districts", tags=["districts"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=responses(409),
)
def create_district(data: DistrictCreate, session: SessionDep, principal: AdminDep) -> DistrictPublic:
    if principal.district_id is not None:
        raise Forbidden("A key bound to one district cannot create districts.")
    district = service.create_district(session=session, data=data, actor=principal.name)
    return service.to_public(session=session, district=district)


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
    data: DistrictUpdate, district: AdminDistrictDep, session: SessionDep, principal: AdminDep
) -> DistrictPublic:
    district = service.update_district(session=session, district=district, data=data, actor=principal.name)
    return service.to_public(session=session, district=district)
