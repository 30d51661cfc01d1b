"""What the gateway keeps in its store, typed: one frozen model per record kind and one codec.

Every key is `<kind>:<sha256 of the handle>`: the handle (a Clever `state`, a code, an access token,
a session id, a pending-request or problem id) is a bearer secret or points at one, so the store never
holds one in clear. The codec writes the kind and the hashed key into the value and refuses, on the way
back, a value that is not exactly a record of that kind stored under that key (edited, truncated,
moved to another key or kind): such a record reads as absent, and is logged by kind only."""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any, ClassVar, NewType, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from roster_shared.contracts import CleverRole, Product
from sso_gateway.security import digest
from sso_gateway.store import Store

log = logging.getLogger("sso.store")

Ref = NewType("Ref", str)
"""A hashed handle: the only thing a key is made of."""


def ref(handle: str) -> Ref:
    return Ref(digest(handle))


class Kind(StrEnum):
    LOGIN = "tx"  # a login at Clever in progress, by our `state`
    FINISHED_LOGIN = "used-tx"  # a state already used, to tell a replayed callback from a forged one
    PENDING = "req"  # a frontend's authorize request waiting for the Clever leg
    PROBLEM = "problem"  # a failed login's page, shown at /problem/{id}
    SESSION = "sess"
    CODE = "code"  # one-time code for a frontend
    USED_CODE = "used-code"  # a redeemed code, so a replay revokes its access token
    ACCESS_TOKEN = "at"  # noqa: S105 (a key prefix, not a secret)


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    KIND: ClassVar[Kind]


class LoginTx(Record):
    KIND = Kind.LOGIN
    product: Product
    browser: str  # hash of the browser cookie the login is bound to
    pending: str | None  # the PendingAuthorize handle, when a frontend started the login
    initiated: str  # page, clever (portal restart) or frontend
    created: float
    # started by the district console's client: roster-api's console resolve, not the product's
    console: bool = False


class FinishedLogin(Record):
    KIND = Kind.FINISHED_LOGIN
    browser: str
    product: Product


class PendingAuthorize(Record):
    KIND = Kind.PENDING
    client_id: str
    product: Product
    redirect_uri: str
    state: str | None  # the frontend's own state, handed back with the code
    nonce: str | None
    scope: str
    code_challenge: str | None


class ProblemRecord(Record):
    KIND = Kind.PROBLEM
    product: Product
    problem: str  # a key of pages.PROBLEMS
    reference: str | None
    role: str
    console: bool = False


class CleverLogin(BaseModel):
    """Who Clever said the person is: what a session re-check asks roster-api again."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    user_id: str
    district_id: str
    role: CleverRole


class SessionRecord(Record):
    KIND = Kind.SESSION
    product: Product
    sub: str
    role: str
    district: str
    display_name: str
    given_name: str
    family_name: str
    reference: str
    clever: CleverLogin
    resolved_at: float
    created: float
    seen: float
    auth_time: int
    # a district console login (sub `clever:<user id>`): never handed to a product's client, nor back
    console: bool = False


class CodeGrant(Record):
    KIND = Kind.CODE
    client_id: str
    redirect_uri: str
    sid: Ref
    nonce: str | None
    scope: str
    code_challenge: str | None
    auth_time: int
    # checked as well as the store's TTL, so the lifetime holds whatever the store's clock
    expires: float


class UsedCode(Record):
    KIND = Kind.USED_CODE
    at: Ref


class AccessGrant(Record):
    KIND = Kind.ACCESS_TOKEN
    sid: Ref
    client_id: str
    scope: str
    sub: str


R = TypeVar("R", bound=Record)


def key(kind: Kind, at: Ref) -> str:
    return f"{kind.value}:{at}"


def _plain(model: BaseModel) -> dict[str, Any]:
    """The fields as a dict, nested models too; enums stay StrEnums (JSON strings). A profile of the
    login had `model_dump` at 3 % of the gateway's CPU; this is a dict copy."""
    return {name: _plain(value) if isinstance(value, BaseModel) else value for name, value in model}


def encode(record: Record, at: Ref) -> dict[str, Any]:
    return {"kind": record.KIND.value, "key": key(record.KIND, at), "data": _plain(record)}


def decode(model: type[R], at: Ref, value: dict[str, Any] | None) -> R | None:
    if value is None:
        return None
    if value.get("kind") != model.KIND.value or value.get("key") != key(model.KIND, at):
        log.warning("store record rejected", extra={"fields": {"kind": model.KIND.value, "why": "key"}})
        return None
    try:
        return model.model_validate(value.get("data"))
    except ValidationError:
        log.warning("store record rejected", extra={"fields": {"kind": model.KIND.value, "why": "shape"}})
        return None


class Records:
    """The typed face of a `Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def put(self, at: Ref, record: Record, ttl: float) -> None:
        await self.store.put(key(record.KIND, at), encode(record, at), ttl)

    async def get(self, model: type[R], at: Ref) -> R | None:
        return decode(model, at, await self.store.get(key(model.KIND, at)))

    async def pop(self, model: type[R], at: Ref) -> R | None:
        return decode(model, at, await self.store.pop(key(model.KIND, at)))

    async def delete(self, model: type[Record], at: Ref) -> None:
        await self.store.delete(key(model.KIND, at))
