"""FastAPI dependencies: settings, database session, API-key principal with scope, district access."""

from collections.abc import Iterator
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Path, Request
from sqlmodel import Session

from roster_api.auth import KeyCache, Principal, Scope, authenticate
from roster_api.errors import Forbidden, Unauthenticated, district_not_found
from roster_api.models import District
from roster_api.settings import Settings


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_engine(request: Request) -> sa.Engine:
    engine: sa.Engine = request.app.state.engine
    return engine


def get_session(engine: Annotated[sa.Engine, Depends(get_engine)]) -> Iterator[Session]:
    """Commits when the route returns, rolls back when it raises. Services flush, never commit."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
EngineDep = Annotated[sa.Engine, Depends(get_engine)]
SessionDep = Annotated[Session, Depends(get_session)]


class Require:
    """`Depends(Require(Scope.ROSTER_READ))`: a valid key with that scope, else 401/403.

    The route-list test finds these instances to check that every route is protected."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    def __call__(self, request: Request, engine: EngineDep) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != "bearer" or not raw.strip():
            raise Unauthenticated("Send an API key as `Authorization: Bearer <key>`.")
        cache: KeyCache = request.app.state.key_cache
        principal = authenticate(engine=engine, cache=cache, raw_key=raw.strip())
        if principal is None:
            raise Unauthenticated("The API key is not valid or was revoked.")
        if not principal.has(self.scope):
            raise Forbidden(f"This API key lacks the {self.scope.value!r} scope.")
        request.state.principal = principal
        return principal


REQUIRE = {scope: Require(scope) for scope in Scope}


def district_access(scope: Scope) -> object:
    """Dependency for routes under /v1/districts/{district_id}: the key must see the district, and the
    district must exist. Another district's resources are 404, never 403 (no existence leak)."""

    def dependency(
        district_id: Annotated[str, Path(max_length=64)],
        principal: Annotated[Principal, Depends(REQUIRE[scope])],
        session: SessionDep,
    ) -> District:
        if not principal.sees(district_id):
            raise district_not_found(district_id)
        district = session.get(District, district_id)
        if district is None:
            raise district_not_found(district_id)
        return district

    return Depends(dependency)


AdminDep = Annotated[Principal, Depends(REQUIRE[Scope.ADMIN])]
ReadDep = Annotated[Principal, Depends(REQUIRE[Scope.ROSTER_READ])]
WriteDep = Annotated[Principal, Depends(REQUIRE[Scope.ROSTER_WRITE])]
ResolveDep = Annotated[Principal, Depends(REQUIRE[Scope.RESOLVE])]
ReadDistrictDep = Annotated[District, district_access(Scope.ROSTER_READ)]
WriteDistrictDep = Annotated[District, district_access(Scope.ROSTER_WRITE)]
AdminDistrictDep = Annotated[District, district_access(Scope.ADMIN)]
