from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from roster_api.models import LoginAttempt


class AttemptOutcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"


class LoginAttemptPublic(BaseModel):
    """One resolve attempt as support sees it. The email Clever sent is not kept, only whether one came
    (search by it with `?email=`, which compares keyed hashes)."""

    reference: str
    created_at: datetime
    product: str
    district_id: str | None
    clever_district_id: str
    clever_user_id: str
    clever_role: str
    email_sent: bool
    outcome: AttemptOutcome
    reason: str | None
    matched_by: str | None
    account_id: str | None
    person_id: str | None
    caller: str | None
    rule: str | None = Field(
        description="What decided: district, license, clever_id, email, role, active or account"
    )
    diagnosis: str | None = Field(description="Why, in a sentence support can read to the district")
    roster: dict[str, Any] | None = Field(
        description="What the roster held at that moment for this Clever ID and email (ids and flags)"
    )

    @classmethod
    def of(cls, attempt: LoginAttempt) -> LoginAttemptPublic:
        return cls(
            reference=attempt.reference,
            created_at=attempt.created_at,
            product=attempt.product,
            district_id=attempt.district_id,
            clever_district_id=attempt.clever_district_id,
            clever_user_id=attempt.clever_user_id,
            clever_role=attempt.clever_role,
            email_sent=attempt.email_digest is not None,
            outcome=AttemptOutcome(attempt.outcome),
            reason=attempt.reason,
            matched_by=attempt.matched_by,
            account_id=attempt.account_id,
            person_id=attempt.person_id,
            caller=attempt.caller,
            rule=attempt.rule,
            diagnosis=attempt.diagnosis,
            roster=attempt.roster,
        )


class LoginAttemptDetail(LoginAttemptPublic):
    roster_now: dict[str, Any] | None = Field(
        description="What the roster holds today for this Clever ID, to see whether anything changed since"
    )
