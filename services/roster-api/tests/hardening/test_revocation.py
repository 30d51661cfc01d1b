"""Revocation takes effect: two real `roster-api serve` processes share one database (PostgreSQL, and a
SQLite file); a key both have verified (and cached) is revoked as `roster-api keys revoke` does; within a
second both refuse it, on every kind of route (a roster read, and admin routes)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import sqlalchemy as sa
from sqlmodel import Session, select

from roster_api.models import ApiKey, District, utcnow

from . import live

DEADLINE_SECONDS = 1.0


def _wait_visible(engine: sa.Engine, district_id: str) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with Session(engine) as session:
            if session.get(District, district_id) is not None:
                return
        time.sleep(0.05)
    raise AssertionError(f"district {district_id} not visible")


def _revoke(engine: sa.Engine, name: str) -> None:
    """What `roster-api keys revoke` does (the clock starts when it has committed)."""
    with Session(engine) as session:
        key = session.exec(select(ApiKey).where(ApiKey.name == name)).one()
        key.revoked_at = utcnow()
        session.add(key)
        session.commit()


def _refused_after(urls: list[str], path: str, key: str) -> list[float]:
    """For each process, the seconds until it refuses the key (401); gives up after 5 s."""
    started = time.monotonic()
    refused: dict[str, float] = {}
    while len(refused) < len(urls) and time.monotonic() - started < 5:
        for url in set(urls) - set(refused):
            status = httpx.get(url + path, headers={"Authorization": f"Bearer {key}"}).status_code
            if status == 401:
                refused[url] = time.monotonic() - started
            else:
                assert status == 200, status
        time.sleep(0.02)
    return [refused.get(url, float("inf")) for url in urls]


def test_a_revoked_key_fails_on_every_process_within_a_second(
    database_url: str, roster_engine: sa.Engine, make_key: Callable[..., str], tmp_path: Path
) -> None:
    admin = make_key("admin", name="ops-admin")
    env = live.env_for(database_url, tmp_path / "data", ROSTER_RUN_WORKER="false")
    with live.serving(env, [tmp_path / "serve-1.log", tmp_path / "serve-2.log"]) as servers:
        urls = [server.url for server in servers]
        created = httpx.post(
            urls[0] + "/v1/districts",
            json={"id": "d1", "name": "D1"},
            headers={"Authorization": f"Bearer {admin}"},
        )
        assert created.status_code == 201, created.text
        _wait_visible(roster_engine, "d1")
        reader = make_key("roster:read", district="d1", name="reader")
        for url in urls:  # both processes verify (and, where they may, cache) both keys
            for _ in range(3):
                ok = httpx.get(
                    url + "/v1/districts/d1/imports", headers={"Authorization": f"Bearer {reader}"}
                )
                assert ok.status_code == 200, ok.text
                ok = httpx.get(url + "/v1/districts", headers={"Authorization": f"Bearer {admin}"})
                assert ok.status_code == 200, ok.text

        _revoke(roster_engine, "reader")
        reader_times = _refused_after(urls, "/v1/districts/d1/imports", reader)
        _revoke(roster_engine, "ops-admin")
        admin_times = _refused_after(urls, "/v1/districts", admin)
    assert max(reader_times) < DEADLINE_SECONDS, reader_times
    assert max(admin_times) < DEADLINE_SECONDS, admin_times
