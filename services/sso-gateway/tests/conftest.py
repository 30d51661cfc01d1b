"""Fixtures for the gateway tests; the helpers live in gwkit.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from clever_sim.app import create_app as create_sim
from clever_sim.seed import Seed
from sso_gateway.main import create_app as create_gateway

from .gwkit import Env, FakeClock, FakeRoster, MultiProductRoster, gateway_settings, make_browser, make_seed


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake_roster() -> FakeRoster:
    return MultiProductRoster()


@pytest.fixture
def make_env(tmp_path: Path, clock: FakeClock) -> Callable[..., Any]:
    """`async with make_env(roster=..., **settings_overrides) as env:`"""

    @asynccontextmanager
    async def build(
        *,
        roster: FakeRoster | None = None,
        roster_transport: httpx.AsyncBaseTransport | None = None,
        clever_transport: httpx.AsyncBaseTransport | None = None,
        seed: Seed | None = None,
        **overrides: Any,
    ) -> AsyncIterator[Env]:
        sim = create_sim(seed or make_seed(), clock=clock)
        settings = gateway_settings(tmp_path, **overrides)
        transport = roster_transport or httpx.MockTransport((roster or MultiProductRoster()).handler)
        app = create_gateway(
            settings,
            clever_transport=clever_transport or httpx.ASGITransport(app=sim),
            roster_transport=transport,
            clock=clock,
        )
        async with LifespanManager(app), make_browser(app, sim) as browser:
            yield Env(app, sim, browser, clock, settings, roster)

    return build
