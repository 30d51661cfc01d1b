"""Public shapes of the roster read API. Ids are the district's own (school_id, class_id), the Clever ID,
or the opaque person id (`p_...`); no row numbers, hashes or internal fields."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from roster_shared.contracts import Product

# Clever's grade vocabulary (docs/design.md, "Roster formats"); the import normalizes to these.
GRADES = (
    "InfantToddler",
    "Preschool",
    "PreKindergarten",
    "TransitionalKindergarten",
    "Kindergarten",
    *(str(n) for n in range(1, 14)),
    "PostGraduate",
    "Ungraded",
    "Other",
)
_GRADE_LOOKUP = {g.lower(): g for g in GRADES}


def canonical_grade(value: str) -> str | None:
    """`kindergarten` -> `Kindergarten`, `03` -> `3`; None when it is not a Clever grade."""
    text = value.strip()
    if text.isdigit():
        text = str(int(text))
    return _GRADE_LOOKUP.get(text.lower())


class Status(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    ALL = "all"


class SchoolPublic(BaseModel):
    school_id: str
    name: str
    active: bool
    created_at: datetime
    updated_at: datetime
    deactivated_at: datetime | None


class SchoolCounts(BaseModel):
    classes: int = Field(description="Active classes")
    teachers: int = Field(description="Active teachers of the active classes")
    students: int = Field(description="Active students enrolled in the active classes")


class SchoolDetail(SchoolPublic):
    counts: SchoolCounts


class AccountBrief(BaseModel):
    product: Product
    account_id: str
    active: bool


class ClassMembership(BaseModel):
    class_id: str
    name: str
    school_id: str
    class_active: bool
    membership_active: bool


class PersonPublic(BaseModel):
    id: str = Field(description="Opaque person id (p_...)")
    role: str
    clever_id: str | None
    clever_id_source: str | None = Field(
        description='"roster" when the CSV gave it, "login" when bound at a first login by email'
    )
    email: str | None
    first_name: str
    last_name: str
    grade: str | None
    active: bool
    school_ids: list[str] = Field(
        description="Schools of the teacher's active classes / the student's active enrollments"
    )
    created_at: datetime
    updated_at: datetime
    deactivated_at: datetime | None


class PersonDetail(PersonPublic):
    classes: list[ClassMembership]
    accounts: list[AccountBrief]


class Member(BaseModel):
    id: str
    clever_id: str | None
    email: str | None
    first_name: str
    last_name: str
    grade: str | None
    active: bool
    membership_active: bool


class ClassPublic(BaseModel):
    class_id: str
    name: str
    school_id: str
    active: bool
    created_at: datetime
    updated_at: datetime
    deactivated_at: datetime | None


class ClassDetail(ClassPublic):
    teachers: list[Member]
    students: list[Member]


class AccountPublic(BaseModel):
    account_id: str
    product: Product
    active: bool
    person_id: str
    role: str
    clever_id: str | None
    first_name: str
    last_name: str
    person_active: bool
    created_at: datetime


class SeatUse(BaseModel):
    product: Product
    licensed: int
    used: int = Field(description="Active students with an active account in the product")
    remaining: int = Field(description="licensed - used; negative when over the license")
    enforce_seats: bool


class Seats(BaseModel):
    district_id: str
    products: list[SeatUse]
