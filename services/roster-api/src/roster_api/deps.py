"""FastAPI dependencies: settings, database session, API-key principal with scope, district access."""

import asyncio
from collections.abc import Iterator
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Path, Request
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from roster_api.auth import KeyCache, Principal, Scope, authenticate, hash_key
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


def get_key_cache(request: Request) -> KeyCache:
    cache: KeyCache = request.app.state.key_cache
    return cache


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
EngineDep = Annotated[sa.Engine, Depends(get_engine)]
KeyCacheDep = Annotated[KeyCache, Depends(get_key_cache)]
SessionDep = Annotated[Session, Depends(get_session)]


class Require:
    """`Depends(Require(Scope.ROSTER_READ))`: a valid key with that scope, else 401/403.

    A cached verdict costs no thread hop (resolve, on every login, is the hot path). When it expires,
    the concurrent requests of that key wait for one check instead of each running its own (a burst of
    database writes every cache period under load). The route-list test finds these instances to check
    that every route is protected."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self._checking: dict[str, asyncio.Future[Principal | None]] = {}

    async def _check(self, engine: sa.Engine, cache: KeyCache, raw: str, key_hash: str) -> Principal | None:
        pending = self._checking.get(key_hash)
        if pending is not None:
            await asyncio.wait([pending])
            if not pending.cancelled():
                return pending.result()
            # the request that was checking went away before the answer: check here instead
        future: asyncio.Future[Principal | None] = asyncio.get_running_loop().create_future()
        self._checking[key_hash] = future
        try:
            principal = await run_in_threadpool(authenticate, engine=engine, cache=cache, raw_key=raw)
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters, if any, re-raise it
            raise
        except BaseException:
            future.cancel()
            raise
        else:
            future.set_result(principal)
            return principal
        finally:
            del self._checking[key_hash]

    async def __call__(self, request: Request) -> Principal:
        # no sub-dependencies: a sync one would cost a thread hop on every request
        header = request.headers.get("authorization", "")
        scheme, _, raw = header.partition(" ")
        raw = raw.strip()
        if scheme.lower() != "bearer" or not raw:
            raise Unauthenticated("Send an API key as `Authorization: Bearer <key>`.")
        cache: KeyCache = request.app.state.key_cache
        key_hash = hash_key(raw)
        hit, principal = cache.get(key_hash)
        if not hit:
            principal = await self._check(request.app.state.engine, cache, raw, key_hash)
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
