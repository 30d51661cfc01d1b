"""The gateway's only state: login transactions, pending OIDC requests, one-time codes, sessions and
access tokens, each a small JSON value with a time to live. SQLite on one machine; Redis when the gateway
is replicated. `pop` is atomic on both, which is what makes codes and states single use."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

Clock = Callable[[], float]


class StoreUnavailable(Exception):
    """The session store cannot be reached; the login cannot continue (shown as a 503 page)."""


class Store(Protocol):
    async def put(self, key: str, value: dict[str, Any], ttl: float) -> None: ...
    async def get(self, key: str) -> dict[str, Any] | None: ...
    async def pop(self, key: str) -> dict[str, Any] | None: ...
    async def add(self, key: str, value: dict[str, Any], ttl: float) -> bool: ...
    async def delete(self, key: str) -> None: ...
    async def ping(self) -> bool: ...
    async def close(self) -> None: ...


class SqliteStore:
    """One file, WAL, autocommit. Calls are sub-millisecond local writes, so they run inline on the event
    loop instead of paying a thread hop per call."""

    def __init__(self, path: Path, clock: Clock = time.time) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL NOT NULL)"
        )
        self._lock = threading.Lock()
        self._clock = clock
        self._writes = 0

    def _purge_sometimes(self) -> None:
        self._writes += 1
        if self._writes % 500 == 0:
            self._db.execute("DELETE FROM kv WHERE expires < ?", (self._clock(),))

    async def put(self, key: str, value: dict[str, Any], ttl: float) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO kv (key, value, expires) VALUES (?, ?, ?)",
                (key, json.dumps(value), self._clock() + ttl),
            )
            self._purge_sometimes()

    async def add(self, key: str, value: dict[str, Any], ttl: float) -> bool:
        now = self._clock()
        with self._lock:
            self._db.execute("DELETE FROM kv WHERE key = ? AND expires < ?", (key, now))
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO kv (key, value, expires) VALUES (?, ?, ?)",
                (key, json.dumps(value), now + ttl),
            )
            return cursor.rowcount == 1

    async def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT value, expires FROM kv WHERE key = ?", (key,)).fetchone()
        if row is None or row[1] < self._clock():
            return None
        value: dict[str, Any] = json.loads(row[0])
        return value

    async def pop(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("DELETE FROM kv WHERE key = ? RETURNING value, expires", (key,)).fetchone()
        if row is None or row[1] < self._clock():
            return None
        value: dict[str, Any] = json.loads(row[0])
        return value

    async def delete(self, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM kv WHERE key = ?", (key,))

    async def ping(self) -> bool:
        try:
            with self._lock:
                self._db.execute("SELECT 1").fetchone()
        except sqlite3.Error:
            return False
        return True

    async def close(self) -> None:
        with self._lock:
            self._db.close()


class RedisStore:
    """Keys live under `prefix` so several gateways (or test runs) can share one Redis."""

    def __init__(self, url: str, prefix: str) -> None:
        from redis.asyncio import Redis

        self._redis = Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._prefix = prefix

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        from redis.exceptions import RedisError

        try:
            return await getattr(self._redis, method)(*args, **kwargs)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}") from exc

    async def put(self, key: str, value: dict[str, Any], ttl: float) -> None:
        await self._call("set", self._prefix + key, json.dumps(value), px=max(1, int(ttl * 1000)))

    async def add(self, key: str, value: dict[str, Any], ttl: float) -> bool:
        ms = max(1, int(ttl * 1000))
        return bool(await self._call("set", self._prefix + key, json.dumps(value), px=ms, nx=True))

    async def get(self, key: str) -> dict[str, Any] | None:
        raw = await self._call("get", self._prefix + key)
        return json.loads(raw) if raw is not None else None

    async def pop(self, key: str) -> dict[str, Any] | None:
        raw = await self._call("getdel", self._prefix + key)
        return json.loads(raw) if raw is not None else None

    async def delete(self, key: str) -> None:
        await self._call("delete", self._prefix + key)

    async def ping(self) -> bool:
        from redis.exceptions import RedisError

        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._redis.aclose()
