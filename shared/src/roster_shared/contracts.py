"""The resolve contract between sso-gateway and roster-api (docs/design.md, "Resolving a Clever login").

`POST /v1/resolve` with a `ResolveRequest` answers 200 with a `ResolveResult`, or 422 with the error
envelope whose code is the upper-cased `ResolveReason` and whose single detail is a `ResolveFailure`.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

CLEVER_ID_PATTERN = r"^[0-9a-f]{24}$"
_CLEVER_ID_RE = re.compile(CLEVER_ID_PATTERN)


class Product(StrEnum):
    ROCKETLIT = "rocketlit"
    INNERORBIT = "innerorbit"


class RosterRole(StrEnum):
    STUDENT = "student"
    TEACHER = "teacher"


class CleverRole(StrEnum):
    STUDENT = "student"
    TEACHER = "teacher"
    STAFF = "staff"
    DISTRICT_ADMIN = "district_admin"
    CONTACT = "contact"


class MatchedBy(StrEnum):
    CLEVER_ID = "clever_id"
    SIS_ID = "sis_id"
    EMAIL = "email"


class ResolveReason(StrEnum):
    NO_ACCOUNT = "no_account"
    INACTIVE_ACCOUNT = "inactive_account"
    PRODUCT_NOT_LICENSED = "product_not_licensed"
    DISTRICT_NOT_LINKED = "district_not_linked"
    AMBIGUOUS_EMAIL = "ambiguous_email"
    AMBIGUOUS_SIS_ID = "ambiguous_sis_id"
    ROLE_MISMATCH = "role_mismatch"
    CLEVER_ID_CONFLICT = "clever_id_conflict"


def _clever_id(value: str) -> str:
    value = value.strip().lower()
    if not _CLEVER_ID_RE.match(value):
        raise ValueError("must be a Clever ID: 24 hexadecimal characters")
    return value


def _email(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().lower()
    return value or None


def _sis_id(value: str | None) -> str | None:
    if value is None:
        return None
    return value.strip() or None


CleverId = Annotated[str, AfterValidator(_clever_id)]
Email = Annotated[str | None, AfterValidator(_email)]
SisId = Annotated[str | None, AfterValidator(_sis_id)]


def role_fits(clever_role: CleverRole, roster_role: RosterRole) -> bool:
    """Rule 3: Clever student <-> rostered student; teacher, staff, district admin <-> rostered teacher."""
    if clever_role is CleverRole.STUDENT:
        return roster_role is RosterRole.STUDENT
    if clever_role is CleverRole.CONTACT:
        return False
    return roster_role is RosterRole.TEACHER


class ResolveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product: Product
    clever_user_id: CleverId
    clever_district_id: CleverId
    email: Email = Field(default=None, max_length=320)
    clever_role: CleverRole
    # the district's own id for this user (Clever's `roles.<role>.sis_id`); matched within the district
    # and role when no person has the Clever ID. Sent only when known: a roster-api that predates it
    # refuses unknown fields.
    sis_id: SisId = Field(default=None, max_length=255)


class ResolveResult(BaseModel):
    account_id: str
    product: Product
    role: RosterRole
    district_id: str
    display_name: str
    school_ids: list[str]
    matched_by: MatchedBy
    reference: str


class ResolveFailure(BaseModel):
    reason: ResolveReason
    reference: str
    message: str


class ConsoleResolveRequest(BaseModel):
    """`POST /v1/console/resolve`: may this Clever user use the district console? Answers 200 with a
    `ConsoleIdentity`, or 422 like `/v1/resolve` (`DISTRICT_NOT_LINKED`, `ROLE_MISMATCH`)."""

    model_config = ConfigDict(extra="forbid")

    clever_user_id: CleverId
    clever_district_id: CleverId
    clever_role: CleverRole


class ConsoleIdentity(BaseModel):
    """Who a console login is for: bound to one district, named `actor` (`clever:<user id>`)."""

    district_id: str
    district_name: str
    actor: str
    clever_user_id: str
    clever_role: CleverRole
    reference: str
