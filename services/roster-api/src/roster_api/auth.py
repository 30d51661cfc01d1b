"""API keys: 256-bit random, shown once, stored as SHA-256 (a key this long needs no slow hash),
scoped, optionally bound to one district."""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import psycopg
import sqlalchemy as sa
from sqlmodel import Session, col, select

from roster_api.db import SQLITE_BUSY_TIMEOUT_MS
from roster_api.errors import Invalid, NotFound
from roster_api.models import ApiKey, District, utcnow

log = logging.getLogger("roster_api.auth")
KEY_PREFIX = "rk_"
# How long a verified key is trusted without a query, while the process hears of every change to the
# keys (PostgreSQL notifications): a revoked key stops working everywhere within a second.
CACHE_SECONDS = 30.0
# `last_used_at` is written at most this often per key (a write per request would be a write per login).
TOUCH_SECONDS = 60.0
CHANNEL = "api_key_changed"


class Scope(StrEnum):
    ADMIN = "admin"
    ROSTER_READ = "roster:read"
    ROSTER_WRITE = "roster:write"
    RESOLVE = "resolve"


@dataclass(frozen=True)
class Principal:
    key_id: str
    name: str
    scopes: frozenset[str]
    district_id: str | None

    def has(self, scope: Scope) -> bool:
        # admin implies every other scope
        return scope.value in self.scopes or Scope.ADMIN.value in self.scopes

    def sees(self, district_id: str) -> bool:
        return self.district_id is None or self.district_id == district_id


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def new_id(prefix: str, nbytes: int = 12) -> str:
    return prefix + secrets.token_hex(nbytes)


def create_api_key(
    *, session: Session, name: str, scopes: list[str], district_id: str | None
) -> tuple[ApiKey, str]:
    """Returns the stored key and the raw secret, which is never stored or shown again."""
    name = name.strip()
    if not name or len(name) > 100:
        raise Invalid("A key needs a name of 1 to 100 characters.", field="name")
    valid = {s.value for s in Scope}
    unknown = [s for s in scopes if s not in valid]
    if unknown or not scopes:
        raise Invalid(f"Scopes must be among {sorted(valid)}; got {unknown or 'none'}.", field="scopes")
    if district_id is not None and session.get(District, district_id) is None:
        raise Invalid(f"District {district_id!r} does not exist.", field="district_id")
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        id=new_id("key_", 8),
        name=name,
        key_hash=hash_key(raw),
        scopes=sorted(set(scopes)),
        district_id=district_id,
    )
    session.add(key)
    session.flush()
    return key, raw


def list_api_keys(*, session: Session, district_id: str | None = None, revoked: bool = True) -> list[ApiKey]:
    """Every key (never the secret), oldest first; `district_id`: only keys bound to it; `revoked=False`:
    only live keys."""
    query = select(ApiKey).order_by(col(ApiKey.created_at), col(ApiKey.id))
    if district_id is not None:
        query = query.where(ApiKey.district_id == district_id)
    if not revoked:
        query = query.where(col(ApiKey.revoked_at).is_(None))
    return list(session.exec(query).all())


def revoke_api_key(*, session: Session, key_id: str) -> tuple[ApiKey, bool]:
    """Revokes the key; returns it and whether this call revoked it (False: it already was).
    Raises NotFound for an unknown id."""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"No API key {key_id!r}.")
    if key.revoked_at is not None:
        return key, False
    key.revoked_at = utcnow()
    session.add(key)
    session.flush()
    return key, True


class KeyCache:
    """Keys verified in the last CACHE_SECONDS, so hot routes (resolve) skip a query per request.

    The cache is used only while `trusted`: while a RevocationListener hears every change to the keys
    (PostgreSQL). Without one (SQLite, or the listener's connection is down) every request checks its key
    in the database. A key with the admin scope is always checked in the database."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()
        self.trusted = False
        # bumped by every clear(): a check that started before a change does not fill the cache after it
        self.generation = 0

    def get(self, key_hash: str) -> tuple[bool, Principal | None]:
        if not self.trusted:
            return False, None
        with self._lock:
            entry = self._entries.get(key_hash)
        if entry is None or entry[0] < time.monotonic():
            return False, None
        principal = entry[1]
        if principal is not None and Scope.ADMIN.value in principal.scopes:
            return False, None
        return True, principal

    def put(self, key_hash: str, principal: Principal | None, generation: int | None = None) -> None:
        with self._lock:
            if not self.trusted or (generation is not None and generation != self.generation):
                return
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[key_hash] = (time.monotonic() + CACHE_SECONDS, principal)

    def clear(self) -> None:
        with self._lock:
            self.generation += 1
            self._entries.clear()

    def set_trusted(self, trusted: bool) -> None:
        with self._lock:
            self.generation += 1
            self._entries.clear()
            self.trusted = trusted


_keys: sa.Table = ApiKey.__table__  # type: ignore[attr-defined]
# built once: a request whose key is not cached (every request on SQLite) runs this and nothing else
# (ORM: about 3 times the CPU for one row)
_LOOKUP = sa.select(
    _keys.c.id, _keys.c.name, _keys.c.scopes, _keys.c.district_id, _keys.c.last_used_at
).where(_keys.c.key_hash == sa.bindparam("key_hash"), _keys.c.revoked_at.is_(None))
_TOUCH = sa.update(_keys).where(_keys.c.id == sa.bindparam("key_id")).values(last_used_at=sa.bindparam("now"))


def _touch(conn: sa.Connection, key_id: str, now: datetime) -> None:
    """`last_used_at`, at most once a minute: a courtesy that must never make a request wait. On SQLite an
    import holds the only write lock while it applies, so the touch is tried without waiting and left
    for a later request when the lock is taken (a resolve never waits behind an import)."""
    sqlite = conn.dialect.name == "sqlite"
    if sqlite:
        conn.exec_driver_sql("PRAGMA busy_timeout=0")
    try:
        conn.execute(_TOUCH, {"key_id": key_id, "now": now})
        conn.commit()
    except sa.exc.OperationalError:
        if not sqlite:
            raise
        conn.rollback()
    finally:
        if sqlite:
            conn.exec_driver_sql(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")


def authenticate(*, engine: sa.Engine, cache: KeyCache, raw_key: str) -> Principal | None:
    key_hash = hash_key(raw_key)
    hit, principal = cache.get(key_hash)
    if hit:
        return principal
    generation = cache.generation
    with engine.connect() as conn:
        row = conn.execute(_LOOKUP, {"key_hash": key_hash}).first()
        if row is None:
            principal = None
        else:
            principal = Principal(row.id, row.name, frozenset(row.scopes), row.district_id)
            now = utcnow()
            if row.last_used_at is None or now - row.last_used_at > timedelta(seconds=TOUCH_SECONDS):
                _touch(conn, row.id, now)
    cache.put(key_hash, principal, generation)
    return principal


class RevocationListener:
    """PostgreSQL: LISTENs on the channel the apikey trigger notifies (migration 0007) and empties the
    cache at each change. The cache is trusted only while the listening connection is up; when it
    drops, every request checks the database until the listener is back."""

    def __init__(self, database_url: str, cache: KeyCache) -> None:
        url = sa.make_url(database_url).set(drivername="postgresql")
        self._conninfo = url.render_as_string(hide_password=False)
        self.cache = cache
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="key-revocations", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self.cache.set_trusted(False)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except (psycopg.Error, OSError) as exc:
                log.warning("key revocation listener down", extra={"fields": {"error": type(exc).__name__}})
            self.cache.set_trusted(False)
            self.listening.clear()
            self._stop.wait(1.0)

    def _listen(self) -> None:
        with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            self.cache.set_trusted(True)
            self.listening.set()
            while not self._stop.is_set():
                for _ in conn.notifies(timeout=0.1):
                    self.cache.clear()
                if conn.broken:
                    raise psycopg.OperationalError("the listening connection broke")


def watch_revocations(database_url: str, cache: KeyCache) -> RevocationListener | None:
    """Starts the listener on PostgreSQL; on SQLite there is none and the cache stays unused."""
    if not database_url.startswith("postgresql"):
        return None
    listener = RevocationListener(database_url, cache)
    listener.start()
    return listener
