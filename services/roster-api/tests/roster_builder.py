"""A small builder that writes roster rows straight into the tables (the import engine is not needed to
test reads, resolve and purge): the `roster` fixture of conftest.py. Identity rules match the import
engine's: opaque `p_` ids, lower-cased emails, Clever IDs of 24 hex characters, one account per licensed
product."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa

from roster_api.db import session_scope
from roster_api.models import (
    Account,
    District,
    Enrollment,
    License,
    Person,
    School,
    Section,
    SectionTeacher,
    utcnow,
)


def cid(n: int) -> str:
    """A deterministic Clever ID."""
    return f"{n:024x}"


@dataclass
class Built:
    person_id: str
    accounts: dict[str, str] = field(default_factory=dict)


class RosterBuilder:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def district(
        self,
        district_id: str,
        *,
        clever_district_id: str | None = None,
        licenses: dict[str, int] | None = None,
    ) -> None:
        with session_scope(self.engine) as s:
            s.add(District(id=district_id, name=district_id.title(), clever_district_id=clever_district_id))
            s.flush()
            for product, seats in (licenses if licenses is not None else {"rocketlit": 100}).items():
                s.add(License(district_id=district_id, product=product, seats=seats))

    def school(
        self, district_id: str, school_id: str, name: str | None = None, *, active: bool = True
    ) -> None:
        with session_scope(self.engine) as s:
            s.add(
                School(
                    district_id=district_id,
                    school_id=school_id,
                    name=name or f"School {school_id}",
                    active=active,
                    deactivated_at=None if active else utcnow(),
                )
            )

    def section(
        self, district_id: str, class_id: str, school_id: str, name: str | None = None, *, active: bool = True
    ) -> None:
        with session_scope(self.engine) as s:
            s.add(
                Section(
                    district_id=district_id,
                    class_id=class_id,
                    school_id=school_id,
                    name=name or f"Class {class_id}",
                    active=active,
                )
            )

    def person(
        self,
        district_id: str,
        role: str,
        *,
        clever_id: str | None = None,
        email: str | None = None,
        first: str = "Ada",
        last: str = "Lovelace",
        grade: str | None = None,
        active: bool = True,
        products: Iterable[str] = ("rocketlit",),
        account_active: bool = True,
        clever_id_source: str | None = None,
    ) -> Built:
        person_id = "p_" + secrets.token_hex(8)
        built = Built(person_id)
        with session_scope(self.engine) as s:
            s.add(
                Person(
                    district_id=district_id,
                    id=person_id,
                    role=role,
                    clever_id=clever_id,
                    clever_id_source=clever_id_source or ("roster" if clever_id else None),
                    email=email,
                    first_name=first,
                    last_name=last,
                    grade=grade if role == "student" else None,
                    active=active,
                    deactivated_at=None if active else utcnow(),
                )
            )
            for product in products:
                account_id = "acct_" + secrets.token_hex(12)
                built.accounts[product] = account_id
                s.add(
                    Account(
                        district_id=district_id,
                        person_id=person_id,
                        product=product,
                        account_id=account_id,
                        active=account_active,
                    )
                )
        return built

    def teach(self, district_id: str, class_id: str, person_id: str, *, active: bool = True) -> None:
        with session_scope(self.engine) as s:
            s.add(
                SectionTeacher(district_id=district_id, class_id=class_id, person_id=person_id, active=active)
            )

    def enroll(self, district_id: str, class_id: str, person_id: str, *, active: bool = True) -> None:
        with session_scope(self.engine) as s:
            s.add(Enrollment(district_id=district_id, class_id=class_id, person_id=person_id, active=active))
