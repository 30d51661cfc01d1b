"""The resolve rules (docs/design.md, "Resolving a Clever login"; docs/security.md, "Resolve") as a pure
function over what the roster holds. Both stores (SQLAlchemy for SQLite, async psycopg for PostgreSQL)
gather the same `Facts`, and the one flow in `flow.py` calls `decide`, so the rules exist once.

In order: 1 the Clever ID; 2b the district's own id (`sis_id`, same district and role); 2 the email
(same district); 3 the role must fit; 4 otherwise a reason. A fallback match (2b or 2) binds the Clever
ID to the person, after which only rule 1 applies."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any

from roster_shared.contracts import (
    CleverRole,
    MatchedBy,
    ResolveReason,
    ResolveRequest,
    RosterRole,
    role_fits,
)

# No 0/O, 1/I/L, U: a reference read aloud over the phone or typed from a screenshot stays unambiguous.
REFERENCE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
REFERENCE_PREFIX = "LA-"
# 10 symbols of 30: 49 bits, so millions of attempts a year rarely collide (and a collision is retried).
_GROUP = 5

# Clever users who may be matched by email at all (never link a privileged role by email).
EMAIL_FALLBACK_ROLES = frozenset({CleverRole.STUDENT, CleverRole.TEACHER})
# Clever roles matched by sis_id, and the rostered role whose ids they share: a Clever student's
# `roles.student.sis_id` is the SIS student id, a teacher's the SIS teacher id. Staff and district admin
# ids come from other SIS tables, so they are never compared with a rostered teacher's.
SIS_ID_ROLES: dict[CleverRole, RosterRole] = {
    CleverRole.STUDENT: RosterRole.STUDENT,
    CleverRole.TEACHER: RosterRole.TEACHER,
}
RULE1_DIAGNOSIS = "Matched by Clever ID (rule 1)."
# How many email candidates are fetched: enough to tell "one" from "several" and list a few for support.
MAX_EMAIL_CANDIDATES = 5

FAILURE_MESSAGES: dict[ResolveReason, str] = {
    ResolveReason.NO_ACCOUNT: "No account matches this Clever login.",
    ResolveReason.INACTIVE_ACCOUNT: "The account for this Clever login is not active.",
    ResolveReason.PRODUCT_NOT_LICENSED: "The district has no license for this product.",
    ResolveReason.DISTRICT_NOT_LINKED: "This Clever district is not linked to a district.",
    ResolveReason.AMBIGUOUS_EMAIL: "More than one rostered person has this email.",
    ResolveReason.AMBIGUOUS_SIS_ID: "More than one rostered person has this district id.",
    ResolveReason.ROLE_MISMATCH: "The Clever role does not match the rostered role.",
    ResolveReason.CLEVER_ID_CONFLICT: "The rostered person matching this login has another Clever ID.",
}


# byte -> symbol; 256 is not a multiple of 30, so 16 symbols are 9/256 likely instead of 8/256: the
# reference keeps over 48 bits of entropy, plenty for a lookup key that is also checked for collisions
_BYTE_TO_SYMBOL = bytes(ord(REFERENCE_ALPHABET[b % len(REFERENCE_ALPHABET)]) for b in range(256))


def new_reference() -> str:
    chars = secrets.token_bytes(2 * _GROUP).translate(_BYTE_TO_SYMBOL).decode("ascii")
    return f"{REFERENCE_PREFIX}{chars[:_GROUP]}-{chars[_GROUP:]}"


def normalize_reference(value: str) -> str:
    """What support types: any case, spaces, missing dashes or prefix."""
    raw = "".join(ch for ch in value.upper() if ch.isalnum())
    raw = raw.removeprefix("LA")
    return f"{REFERENCE_PREFIX}{raw[:_GROUP]}-{raw[_GROUP:]}" if len(raw) == 2 * _GROUP else value.strip()


def email_digest(email: str | None, pepper: str) -> str | None:
    """Keyed hash: support can search attempts by email without the email being stored."""
    if not email:
        return None
    return hmac.new(pepper.encode(), email.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Candidate:
    """A rostered person as the rules see them, with their account in the requested product."""

    person_id: str
    role: str
    clever_id: str | None
    clever_id_source: str | None
    active: bool
    first_name: str
    last_name: str
    account_id: str | None
    account_active: bool | None
    # None: not gathered yet (the flow asks the store once the person is matched)
    school_ids: tuple[str, ...] | None = None

    def snapshot(self) -> dict[str, Any]:
        """What support sees: ids and flags, no names or emails."""
        return {
            "person_id": self.person_id,
            "role": self.role,
            "active": self.active,
            "clever_id": self.clever_id,
            "clever_id_source": self.clever_id_source,
            "account_id": self.account_id,
            "account_active": self.account_active,
        }

    def describe(self) -> str:
        state = "an active" if self.active else "an inactive"
        return f"{state} {self.role} ({self.person_id})"


@dataclass(frozen=True)
class Facts:
    """Everything the rules need, gathered in one go. `district_id` is None when no district (visible to
    the caller's key) is linked to the Clever district."""

    district_id: str | None
    licensed: bool = False
    by_clever_id: Candidate | None = None
    # same district, the role of `SIS_ID_ROLES`, this sis_id, not this Clever ID
    by_sis_id: tuple[Candidate, ...] = ()
    by_email: tuple[Candidate, ...] = ()


@dataclass(frozen=True)
class Decision:
    reason: ResolveReason | None
    rule: str
    diagnosis: str
    person: Candidate | None = None
    matched_by: MatchedBy | None = None
    # a fallback (rule 2b or 2) succeeded: the Clever ID gets bound to `person`
    bind: bool = False
    roster: dict[str, Any] | None = field(default=None)

    @property
    def ok(self) -> bool:
        return self.reason is None


def _fail(
    reason: ResolveReason, rule: str, diagnosis: str, facts: Facts, person: Candidate | None = None
) -> Decision:
    return Decision(reason=reason, rule=rule, diagnosis=diagnosis, person=person, roster=_roster(facts))


def _roster(facts: Facts) -> dict[str, Any]:
    return {
        "licensed": facts.licensed,
        "clever_id_match": facts.by_clever_id.snapshot() if facts.by_clever_id else None,
        "sis_id_matches": [c.snapshot() for c in facts.by_sis_id],
        "email_matches": [c.snapshot() for c in facts.by_email],
    }


def _account_problem(person: Candidate, request: ResolveRequest, facts: Facts, how: str) -> Decision | None:
    """Rules 3 and 4 for a matched person: role, person active, account present and active."""
    if not role_fits(request.clever_role, RosterRole(person.role)):
        return _fail(
            ResolveReason.ROLE_MISMATCH,
            "role",
            f"The roster has {how} as {person.describe()}, but Clever says the user is a "
            f"{request.clever_role.value}. Rule 3: Clever students match rostered students; teachers, "
            "staff and district admins match rostered teachers.",
            facts,
            person,
        )
    if not person.active:
        return _fail(
            ResolveReason.INACTIVE_ACCOUNT,
            "active",
            f"The roster has {how} as {person.describe()}: the last roster import did not include them. "
            "They can log in again once a roster with them is imported.",
            facts,
            person,
        )
    if person.account_id is None:
        return _fail(
            ResolveReason.NO_ACCOUNT,
            "account",
            f"The roster has {how} as {person.describe()}, but they have no {request.product.value} account "
            "yet; accounts are created by the next roster import after a license is added.",
            facts,
            person,
        )
    if not person.account_active:
        return _fail(
            ResolveReason.INACTIVE_ACCOUNT,
            "account",
            f"The roster has {how} as {person.describe()}, but their {request.product.value} account is "
            "inactive.",
            facts,
            person,
        )
    return None


def sis_id_role(request: ResolveRequest) -> RosterRole | None:
    """The rostered role a login's sis_id is compared within, or None when rule 2b does not apply."""
    return SIS_ID_ROLES.get(request.clever_role) if request.sis_id else None


def _origin(candidate: Candidate) -> str:
    return "from the roster" if candidate.clever_id_source != "login" else "bound at an earlier login"


def _by_sis_id(request: ResolveRequest, facts: Facts) -> Decision | None:
    """Rule 2b: the district's own id, same district and role, exactly one candidate, no Clever ID yet.
    None when no rostered person has the sis_id (the email fallback may still apply)."""
    if not facts.by_sis_id:
        return None
    active = [c for c in facts.by_sis_id if c.active]
    pool = active or list(facts.by_sis_id)
    if len(pool) > 1:
        shown = ", ".join(c.describe() for c in pool)
        return _fail(
            ResolveReason.AMBIGUOUS_SIS_ID,
            "sis_id",
            f"The roster has no person with this Clever ID, and {len(pool)} people share the district id "
            f"Clever sent for this {request.clever_role.value}: {shown}. Each person's district id must be "
            "unique within the district and role; fix the roster or add their Clever IDs.",
            facts,
        )
    candidate = pool[0]
    if candidate.clever_id is not None:
        return _fail(
            ResolveReason.CLEVER_ID_CONFLICT,
            "sis_id",
            f"The roster has no person with this Clever ID; the person with the district id Clever sent, "
            f"{candidate.describe()}, has another Clever ID ({candidate.clever_id}, {_origin(candidate)}). "
            "If Clever issued this user a new ID, put it in the roster.",
            facts,
            candidate,
        )
    problem = _account_problem(candidate, request, facts, "the district id Clever sent (no Clever ID)")
    if problem is not None:
        return problem
    return Decision(
        reason=None,
        rule="sis_id",
        diagnosis=(
            "Matched by the district's own id (rule 2b): Clever sent the same sis_id as the roster's "
            f"{candidate.role} id; this Clever ID is now bound to the person."
        ),
        person=candidate,
        matched_by=MatchedBy.SIS_ID,
        bind=True,
    )


def decide(request: ResolveRequest, facts: Facts) -> Decision:
    if facts.district_id is None:
        return _fail(
            ResolveReason.DISTRICT_NOT_LINKED,
            "district",
            f"No district is linked to Clever district {request.clever_district_id}. Set the district's "
            "clever_district_id (PATCH /v1/districts/{district_id}).",
            facts,
        )
    if not facts.licensed:
        return _fail(
            ResolveReason.PRODUCT_NOT_LICENSED,
            "license",
            f"District {facts.district_id} has no {request.product.value} license.",
            facts,
        )

    # Rule 1: the Clever ID wins, whatever the email says now.
    person = facts.by_clever_id
    if person is not None:
        problem = _account_problem(person, request, facts, "this Clever ID")
        if problem is not None:
            return problem
        return Decision(
            reason=None,
            rule="clever_id",
            diagnosis=RULE1_DIAGNOSIS,
            person=person,
            matched_by=MatchedBy.CLEVER_ID,
        )

    matched = _by_sis_id(request, facts)
    if matched is not None:
        return matched

    # Rule 2: email fallback, same district only, exactly one candidate, never an empty email.
    if not request.email:
        return _fail(
            ResolveReason.NO_ACCOUNT,
            "clever_id",
            "The roster has no person with this Clever ID, and Clever sent no email, so the email "
            "fallback (rule 2) cannot apply.",
            facts,
        )
    if not facts.by_email:
        return _fail(
            ResolveReason.NO_ACCOUNT,
            "email",
            "The roster has no person with this Clever ID and no person with this email.",
            facts,
        )
    active = [c for c in facts.by_email if c.active]
    pool = active or list(facts.by_email)
    if len(pool) > 1:
        shown = ", ".join(c.describe() for c in pool)
        more = " (at least)" if len(facts.by_email) >= MAX_EMAIL_CANDIDATES else ""
        return _fail(
            ResolveReason.AMBIGUOUS_EMAIL,
            "email",
            f"The roster has no person with this Clever ID, and {len(pool)}{more} people share this email: "
            f"{shown}. Give them distinct emails or add their Clever IDs to the roster.",
            facts,
        )
    candidate = pool[0]
    if candidate.clever_id is not None:
        origin = _origin(candidate)
        return _fail(
            ResolveReason.CLEVER_ID_CONFLICT,
            "email",
            f"The roster has no person with this Clever ID; the person with this email, "
            f"{candidate.describe()}, has another Clever ID ({candidate.clever_id}, {origin}). The email "
            "fallback only applies to people rostered without a Clever ID. If Clever issued this user a "
            "new ID, put it in the roster.",
            facts,
            candidate,
        )
    if request.clever_role not in EMAIL_FALLBACK_ROLES:
        return _fail(
            ResolveReason.ROLE_MISMATCH,
            "role",
            f"The roster has this email as {candidate.describe()} without a Clever ID, but Clever says the "
            f"user is a {request.clever_role.value}; the email fallback is only offered to students and "
            "teachers. Put their Clever ID in the roster.",
            facts,
            candidate,
        )
    problem = _account_problem(candidate, request, facts, "this email (no Clever ID)")
    if problem is not None:
        return problem
    return Decision(
        reason=None,
        rule="email",
        diagnosis="Matched by email (rule 2); this Clever ID is now bound to the person.",
        person=candidate,
        matched_by=MatchedBy.EMAIL,
        bind=True,
    )
