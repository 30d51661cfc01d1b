"""The gateway's typed client (roster_shared.client) against the real roster-api app: the contract
both sides rely on, over real HTTP semantics (ASGI transport, lifespan running)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from roster_api.main import create_app
from roster_shared.client import RosterApiClient, RosterApiError
from roster_shared.contracts import (
    CleverRole,
    MatchedBy,
    Product,
    ResolveFailure,
    ResolveReason,
    ResolveRequest,
    ResolveResult,
)

CLEVER_DISTRICT = "ab" * 12


def cid(n: int) -> str:
    return f"{n:024x}"


async def test_client_parses_success_and_every_failure(
    roster_settings: Any, roster: Any, make_key: Callable[..., str]
) -> None:
    roster.district("d1", clever_district_id=CLEVER_DISTRICT)
    student = roster.person("d1", "student", clever_id=cid(1), first="Kim", last="Lee")
    key = make_key("resolve", name="sso-gateway")
    app = create_app(roster_settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with RosterApiClient("http://roster-api", key, transport=transport) as client:
            ok = await client.resolve(
                ResolveRequest(
                    product=Product.ROCKETLIT,
                    clever_user_id=cid(1),
                    clever_district_id=CLEVER_DISTRICT,
                    email=None,
                    clever_role=CleverRole.STUDENT,
                ),
                request_id="req-1",
            )
            assert isinstance(ok, ResolveResult)
            assert ok.account_id == student.accounts["rocketlit"]
            assert ok.matched_by is MatchedBy.CLEVER_ID
            assert ok.display_name == "Kim Lee"

            failed = await client.resolve(
                ResolveRequest(
                    product=Product.ROCKETLIT,
                    clever_user_id=cid(1),
                    clever_district_id=CLEVER_DISTRICT,
                    email=None,
                    clever_role=CleverRole.TEACHER,
                )
            )
            assert isinstance(failed, ResolveFailure)
            assert failed.reason is ResolveReason.ROLE_MISMATCH
            assert failed.reference.startswith("LA-")
            assert failed.message

        async with RosterApiClient("http://roster-api", "rk_wrong", transport=transport) as client:
            with pytest.raises(RosterApiError) as info:
                await client.resolve(
                    ResolveRequest(
                        product=Product.ROCKETLIT,
                        clever_user_id=cid(1),
                        clever_district_id=CLEVER_DISTRICT,
                        email=None,
                        clever_role=CleverRole.STUDENT,
                    )
                )
            assert info.value.status_code == 401
            assert info.value.code == "UNAUTHENTICATED"
