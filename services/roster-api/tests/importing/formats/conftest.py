"""Fixtures of the format tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture
def policy_district(
    create_district: Callable[..., dict[str, Any]], make_key: Callable[..., str]
) -> Callable[[str], dict[str, str]]:
    """District d1 with the given row policy (`reject` or `skip`), holds off; returns the headers of a
    key that writes and reads it."""

    def create(policy: str) -> dict[str, str]:
        create_district(
            "d1",
            licenses={"rocketlit": {"seats": 100}},
            sync={"on_row_errors": policy, "hold_deactivate_pct": 100, "hold_update_pct": 100},
        )
        return {"Authorization": f"Bearer {make_key('roster:write', 'roster:read', district='d1')}"}

    return create
