"""API keys: 256-bit random, shown once, stored as SHA-256 (a key this long needs no slow hash),
scoped, optionally bound to one district."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Session, col, select

from roster_api.errors import Invalid
from roster_api.models import ApiKey, District, utcnow

KEY_PREFIX = "rk_"
# A revoked key stops working within this many seconds on every replica.
CACHE_SECONDS = 30.0


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


class KeyCache:
    """Keys verified in the last CACHE_SECONDS, so hot routes (resolve) skip a query per request."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def get(self, key_hash: str) -> tuple[bool, Principal | None]:
        with self._lock:
            entry = self._entries.get(key_hash)
        if entry is None or entry[0] < time.monotonic():
            return False, None
        return True, entry[1]

    def put(self, key_hash: str, principal: Principal | None) -> None:
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[key_hash] = (time.monotonic() + CACHE_SECONDS, principal)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def authenticate(*, engine: sa.Engine, cache: KeyCache, raw_key: str) -> Principal | None:
    key_hash = hash_key(raw_key)
    hit, principal = cache.get(key_hash)
    if hit:
        return principal
    with Session(engine) as session:
        query = select(ApiKey).where(ApiKey.key_hash == key_hash, col(ApiKey.revoked_at).is_(None))
        key = session.exec(query).first()
        if key is None:
            principal = None
        else:
            principal = Principal(key.id, key.name, frozenset(key.scopes), key.district_id)
            key.last_used_at = utcnow()
            session.add(key)
            session.commit()
    cache.put(key_hash, principal)
    return principal
