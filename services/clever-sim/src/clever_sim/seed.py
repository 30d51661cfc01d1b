"""Users, districts and apps the simulator knows, seeded from a roster CSV in format v1 (docs/design.md)
so the demo roster and the simulator agree. People without a Clever ID in the roster (the email-only variant)
still have one at Clever: it is derived from the district and email, so it is stable across restarts."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLEVER_ID_RE = re.compile(r"^[0-9a-f]{24}$")
ROLES = ("student", "teacher", "staff", "district_admin", "contact")


def derive_id(*parts: str) -> str:
    """A stable 24-hex Clever-style id from some text (district name, email, ...)."""
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


@dataclass
class SimDistrict:
    id: str
    name: str


@dataclass
class SimUser:
    id: str
    district: str
    role: str
    first_name: str
    last_name: str
    email: str | None = None
    grade: str | None = None
    schools: list[str] = field(default_factory=list)
    sis_id: str | None = None

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "district": self.district,
            "role": self.role,
            "name": f"{self.first_name} {self.last_name}".strip(),
            "email": self.email,
        }


@dataclass
class SimApp:
    """A Clever application: one per product. Clever sends portal logins to the FIRST redirect URI."""

    client_id: str
    client_secret: str
    redirect_uris: list[str]
    name: str


@dataclass
class Seed:
    districts: dict[str, SimDistrict] = field(default_factory=dict)
    users: dict[str, SimUser] = field(default_factory=dict)
    apps: dict[str, SimApp] = field(default_factory=dict)

    def add_district(self, district_id: str, name: str) -> SimDistrict:
        if not CLEVER_ID_RE.match(district_id):
            raise ValueError("a Clever district id is 24 lowercase hex characters")
        district = self.districts.setdefault(district_id, SimDistrict(district_id, name))
        district.name = name
        return district

    def add_user(self, user: SimUser) -> SimUser:
        if not CLEVER_ID_RE.match(user.id):
            raise ValueError("a Clever user id is 24 lowercase hex characters")
        if user.role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if user.district not in self.districts:
            raise ValueError(f"unknown district {user.district}; add the district first")
        self.users[user.id] = user
        return user

    def add_app(self, app: SimApp) -> SimApp:
        if not app.redirect_uris:
            raise ValueError("an app needs at least one redirect URI")
        self.apps[app.client_id] = app
        return app


def _norm_header(name: str) -> str:
    return name.strip().lstrip("\ufeff").strip().lower()


def _sniff_delimiter(text: str) -> str:
    first = text.splitlines()[0] if text else ""
    counts = {d: first.count(d) for d in (",", "\t", ";")}
    return max(counts, key=lambda d: counts[d])


def load_roster(seed: Seed, text: str, *, district_id: str, district_name: str) -> int:
    """Adds the teachers and students of a roster CSV (format v1, with the optional `*_sis_id` columns)
    to `seed`; returns how many users it added or updated. Rows the roster importer would reject are
    skipped, not fatal: the simulator only needs the people. A person with a sis_id is answered with
    `roles.<role>.sis_id`, as Clever does for districts that sync their SIS ids."""
    seed.add_district(district_id, district_name)
    text = text.lstrip("\ufeff")
    reader = csv.DictReader(io.StringIO(text), delimiter=_sniff_delimiter(text))
    reader.fieldnames = [_norm_header(h) for h in reader.fieldnames or []]
    seen: set[str] = set()
    for row in reader:
        values = {k: (v or "").strip() for k, v in row.items() if k}
        school = values.get("school_id", "")
        for role in ("teacher", "student"):
            email = values.get(f"{role}_email", "").lower() or None
            sis_id = values.get(f"{role}_sis_id") or None
            clever_id = values.get(f"{role}_clever_id", "").lower()
            if not CLEVER_ID_RE.match(clever_id):
                if not email and not sis_id:
                    continue
                clever_id = derive_id(district_id, email or f"sis:{role}:{sis_id}")
            existing = seed.users.get(clever_id)
            if existing is not None and existing.district == district_id:
                if school and school not in existing.schools:
                    existing.schools.append(school)
                continue
            seed.add_user(
                SimUser(
                    id=clever_id,
                    district=district_id,
                    role=role,
                    first_name=values.get(f"{role}_first_name", ""),
                    last_name=values.get(f"{role}_last_name", ""),
                    email=email,
                    grade=values.get("student_grade_level") or None if role == "student" else None,
                    schools=[school] if school else [],
                    sis_id=sis_id,
                )
            )
            seen.add(clever_id)
    return len(seen)


def load_config(seed: Seed, path: Path) -> None:
    """A JSON file: {"districts": [{"id", "name", "roster": "file.csv"}], "users": [...], "apps": [...]}.
    Relative roster paths are relative to the JSON file."""
    data = json.loads(path.read_text())
    for district in data.get("districts", []):
        seed.add_district(district["id"], district["name"])
        if district.get("roster"):
            roster = (path.parent / district["roster"]).read_text(encoding="utf-8-sig")
            load_roster(seed, roster, district_id=district["id"], district_name=district["name"])
    for user in data.get("users", []):
        seed.add_user(SimUser(**user))
    for app in data.get("apps", []):
        seed.add_app(SimApp(**app))
