"""Validated roster + the district's current roster -> the exact writes, the report's changes, seats and
the safety-hold decision. Writes nothing: the current roster comes in as plain data (apply.py loads
schools, classes and people), and the big tables (links, accounts) as stores it reads while comparing.

Identity (shared with the resolve engine): a person is matched by (role, Clever ID), else by the
district's own id (role, sis_id), else by (role, email); a roster person whose Clever ID matched nobody
adopts an existing person of that role and sis_id or email who has no Clever ID yet, so a district that
starts exporting Clever IDs keeps its accounts. A Clever ID bound at login is kept while the roster
still has none for that person."""

from __future__ import annotations

import heapq
import itertools
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from roster_api.importing.csv_format import Code, Problem, Problems
from roster_api.importing.links import LinkDelta, LinkStore
from roster_api.importing.links import Links as Links  # (re-exported: tests build a Current with it)
from roster_api.importing.normalize import SIS_KEY_PREFIX, STUDENT, TEACHER, PersonIn, Roster
from roster_api.importing.stored_accounts import AccountRow, StoredAccounts

ENTITIES = ("schools", "teachers", "classes", "students", "class_teachers", "enrollments", "accounts")
HELD_ENTITIES = ("schools", "teachers", "classes", "students", "enrollments")
SAMPLES = 5
# Created rows listed per entity (all are counted): a first import creates a million enrollments, and
# what a person reviews is what changes, deactivates or comes back.
CREATED_LISTED = 1_000
# Deactivated or reactivated class teachers, enrollments and accounts listed per entity and kind (all
# counted): a file that holds one school by mistake deactivates a million enrollments. Schools, classes
# and people are listed in full.
LINKS_LISTED = 50_000
LINK_ENTITIES = ("class_teachers", "enrollments", "accounts")
# entity of the report -> entity of one listed change
ITEM_ENTITY = {
    "schools": "school",
    "classes": "class",
    "teachers": "teacher",
    "students": "student",
    "class_teachers": "class_teacher",
    "enrollments": "enrollment",
    "accounts": "account",
}


class PersonRow(NamedTuple):
    id: str
    role: str
    clever_id: str | None
    clever_id_source: str | None
    email: str | None
    first_name: str
    last_name: str
    grade: str | None
    active: bool
    sis_id: str | None = None  # the district's own id


class LicenseRow(NamedTuple):
    seats: int
    enforce_seats: bool


@dataclass
class Current:
    """The district's roster as stored (active and inactive)."""

    schools: dict[str, tuple[str, bool]] = field(default_factory=dict)  # id -> (name, active)
    classes: dict[str, tuple[str, str, bool]] = field(default_factory=dict)  # id -> (school, name, active)
    people: list[PersonRow] = field(default_factory=list)
    # in memory, or left in the database (apply.load_current): see importing/links.py
    class_teachers: LinkStore = field(default_factory=Links)
    enrollments: LinkStore = field(default_factory=Links)
    # (person, product) -> (account_id, active); an import reads them as a stream (StoredAccounts)
    accounts: dict[tuple[str, str], tuple[str, bool]] | StoredAccounts = field(default_factory=dict)


@dataclass
class Streamed:
    """What a first import already wrote while its file was read (apply.FirstImportStream): every
    enrollment, and each student's person row and accounts, with the ids handed out there."""

    person_ids: dict[str, str] = field(default_factory=dict)  # student key -> person id
    account_ids: dict[tuple[str, str], str] = field(default_factory=dict)  # (person, product) -> id


@dataclass
class Policy:
    licenses: dict[str, LicenseRow]
    hold_deactivate_pct: float = 10.0
    hold_update_pct: float = 75.0
    products: tuple[str, ...] = ("rocketlit", "innerorbit")


@dataclass
class Change:
    """The counts of one entity, a few sample keys per kind (the report), and `items`: one listed
    change per row (see `listed_limit`)."""

    created: int = 0
    updated: int = 0
    deactivated: int = 0
    reactivated: int = 0
    unchanged: int = 0
    samples: dict[str, list[str]] = field(default_factory=dict)
    items: list[ChangeItem] = field(default_factory=list)

    def sample(self, kind: str, key: str) -> None:
        items = self.samples.setdefault(kind, [])
        if len(items) < SAMPLES:
            items.append(key)

    def as_dict(self) -> dict[str, object]:
        return {
            "created": self.created,
            "updated": self.updated,
            "deactivated": self.deactivated,
            "reactivated": self.reactivated,
            "unchanged": self.unchanged,
            "samples": self.samples,
        }


# (field, old value, new value); a created row lists its values with old None
FieldChange = tuple[str, str | None, str | None]


class ChangeItem(NamedTuple):
    """One changed row, as a person reviews it. `key` is the id the district knows (school or class ID,
    a person's Clever ID or email, "class ID / person" for links, the account id); `line` is the file's
    line it comes from, when it comes from one."""

    entity: str  # school | class | teacher | student | class_teacher | enrollment | account
    kind: str  # created | updated | deactivated | reactivated
    key: str
    name: str
    line: int | None
    fields: tuple[FieldChange, ...] = ()


# person write: (id, role, clever_id, clever_id_source, email, first, last, grade, sis_id)
PersonValues = tuple[str, str, str | None, str | None, str | None, str, str, str | None, str | None]


@dataclass
class Plan:
    schools_new: list[tuple[str, str]] = field(default_factory=list)  # (school_id, name)
    schools_set: list[tuple[str, str]] = field(default_factory=list)  # update or reactivate
    schools_off: list[str] = field(default_factory=list)
    classes_new: list[tuple[str, str, str]] = field(default_factory=list)  # (class_id, school_id, name)
    classes_set: list[tuple[str, str, str]] = field(default_factory=list)
    classes_off: list[str] = field(default_factory=list)
    people_new: list[PersonValues] = field(default_factory=list)
    people_set: list[PersonValues] = field(default_factory=list)
    people_off: list[str] = field(default_factory=list)
    class_teachers_new: list[tuple[str, str]] = field(default_factory=list)
    class_teachers_on: list[tuple[str, str]] = field(default_factory=list)
    class_teachers_off: list[tuple[str, str]] = field(default_factory=list)
    enrollments_new: list[tuple[str, str]] = field(default_factory=list)
    enrollments_on: list[tuple[str, str]] = field(default_factory=list)
    enrollments_off: list[tuple[str, str]] = field(default_factory=list)
    accounts_new: list[tuple[str, str, str]] = field(default_factory=list)  # (person_id, product, account)
    accounts_on: list[tuple[str, str]] = field(default_factory=list)
    accounts_off: list[tuple[str, str]] = field(default_factory=list)

    def write_count(self) -> int:
        return sum(len(v) for v in vars(self).values())


@dataclass
class Diff:
    plan: Plan
    changes: dict[str, Change]
    seats: dict[str, dict[str, object]]
    hold_reasons: list[dict[str, object]]
    errors: Problems
    warnings: Problems
    # active people after the import with neither a Clever ID nor the district's own id: matched by
    # email at their first login
    email_only: int = 0

    @property
    def held(self) -> bool:
        return bool(self.hold_reasons)

    def items(self) -> Iterable[ChangeItem]:
        """Every listed change, entity by entity in report order."""
        for name in ENTITIES:
            yield from self.changes[name].items

    def changes_report(self) -> dict[str, object]:
        return {name: self.changes[name].as_dict() for name in ENTITIES}


def listed_limit(entity: str, kind: str) -> int | None:
    """How many changes of a report entity (`students`) and kind are listed; None: all of them."""
    if kind == "created":
        return CREATED_LISTED
    if entity in LINK_ENTITIES and kind in ("deactivated", "reactivated"):
        return LINKS_LISTED
    return None


class _RandomHex:
    """96-bit random ids, drawn from the OS in batches: one urandom call per 4,096 ids instead of one
    per id (an import of a large district mints half a million)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.pool: list[str] = []

    def __call__(self) -> str:
        if not self.pool:
            blob = secrets.token_hex(12 * 4096)
            self.pool = [self.prefix + blob[i : i + 24] for i in range(0, len(blob), 24)]
        return self.pool.pop()


class AscendingIds:
    """Ids that ascend in the order they are drawn: 8 hex digits of sequence, then 64 random bits. For
    rows written in that order, every index on the id grows at its right edge."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.counter = itertools.count()
        self.random = _RandomHex("")

    def __call__(self) -> str:
        return f"{self.prefix}{next(self.counter):08x}{self.random()[:16]}"

    def take(self, n: int) -> list[str]:
        """The next n ids at once (a first import draws hundreds of thousands)."""
        blob = secrets.token_hex(8 * n)
        start = next(self.counter)
        self.counter = itertools.count(start + n)
        prefix = self.prefix
        return [f"{prefix}{start + i:08x}{blob[16 * i : 16 * i + 16]}" for i in range(n)]


new_person_id = _RandomHex("p_")
new_account_id = _RandomHex("acct_")


def _values(
    person_id: str, role: str, clever_id: str | None, source: str | None, person: PersonIn
) -> PersonValues:
    """The person row written for a roster person (the Clever ID and its source are decided by the
    caller: a stored person may keep one bound at login)."""
    return (
        person_id,
        role,
        clever_id,
        source,
        person.email,
        person.first_name,
        person.last_name,
        person.grade,
        person.sis_id,
    )


def created_person(person_id: str, role: str, person: PersonIn) -> PersonValues:
    """The row written for a roster person who is new to the district."""
    return _values(person_id, role, person.clever_id, "roster" if person.clever_id else None, person)


def _row_key(row: PersonRow) -> str:
    return row.clever_id or (SIS_KEY_PREFIX + row.sis_id if row.sis_id else row.email or row.id)


def _match_people(
    roster: Roster, current: Current, errors: Problems
) -> tuple[dict[tuple[str, str], PersonRow], list[tuple[str, PersonIn]]]:
    """-> ({(role, roster key): existing row}, [(role, roster person) to create])."""
    groups = ((TEACHER, roster.teachers), (STUDENT, roster.students))
    if not current.people:  # a first import: everyone is new
        return {}, [(role, person) for role, people in groups for person in people.values()]
    by_clever_id = {row.clever_id: row for row in current.people if row.clever_id}
    matched: dict[tuple[str, str], PersonRow] = {}
    used: set[str] = set()
    pending: list[tuple[str, PersonIn]] = []
    for role, people in groups:
        for key, person in people.items():
            if person.clever_id is None:
                pending.append((role, person))
                continue
            found = by_clever_id.get(person.clever_id)
            if found is None:
                pending.append((role, person))
            elif found.role != role:
                column = "student_clever_id" if role == STUDENT else "teacher_clever_id"
                errors.add(
                    Problem(
                        person.line,
                        column,
                        Code.CLEVER_ID_ROLE_CHANGED,
                        f"The Clever ID {key} is a {found.role} in the current roster, so it cannot be a "
                        f"{role} here.",
                        "A Clever ID keeps its role; check that the ID is in the right column.",
                    )
                )
            else:
                matched[(role, key)] = found
                used.add(found.id)
    pending = _match_sis_ids(pending, current, matched, used)
    # the stored people who could be adopted by email: only those of an email a pending person has
    emails = {(role, person.email) for role, person in pending if person.email}
    by_email: dict[tuple[str, str], list[PersonRow]] = {}
    for row in current.people if emails else ():
        email = row.email
        if email and (row.role, email) in emails:
            by_email.setdefault((row.role, email), []).append(row)
    for rows in by_email.values():
        if len(rows) > 1:
            rows.sort(key=lambda r: (not r.active, r.clever_id is not None, r.id))
    create: list[tuple[str, PersonIn]] = []
    for role, person in pending:
        candidates = by_email.get((role, person.email), []) if person.email else []
        adopted = next(
            (
                r
                for r in candidates
                if r.id not in used
                and (person.clever_id is None or r.clever_id is None)
                and (person.sis_id is None or r.sis_id is None)
            ),
            None,
        )
        if adopted is None:
            create.append((role, person))
        else:
            matched[(role, person.key)] = adopted
            used.add(adopted.id)
    return matched, create


def _match_sis_ids(
    pending: list[tuple[str, PersonIn]],
    current: Current,
    matched: dict[tuple[str, str], PersonRow],
    used: set[str],
) -> list[tuple[str, PersonIn]]:
    """The district's own id, after the Clever ID and before the email: a roster person whose Clever
    ID matched nobody is the stored person of that role and sis_id (active first) who has no other
    Clever ID. Returns the people still pending."""
    wanted = {(role, person.sis_id) for role, person in pending if person.sis_id}
    if not wanted:
        return pending
    by_sis: dict[tuple[str, str], list[PersonRow]] = {}
    for row in current.people:
        if row.sis_id and (row.role, row.sis_id) in wanted and row.id not in used:
            by_sis.setdefault((row.role, row.sis_id), []).append(row)
    for rows in by_sis.values():
        rows.sort(key=lambda r: (not r.active, r.id))
    still: list[tuple[str, PersonIn]] = []
    for role, person in pending:
        candidates = by_sis.get((role, person.sis_id), []) if person.sis_id else []
        found = next(
            (
                r
                for r in candidates
                if r.id not in used and (person.clever_id is None or r.clever_id in (None, person.clever_id))
            ),
            None,
        )
        if found is None:
            still.append((role, person))
        else:
            matched[(role, person.key)] = found
            used.add(found.id)
    return still


def _ids_by_first_class(
    roster: Roster, create: list[tuple[str, PersonIn]], person_id: Callable[[], str]
) -> list[str]:
    """New ids for `create`, in its order. They are handed out ascending along each person's first
    class, the order enrollments and class teachers are written in, so the (district, person) index of
    those tables fills school by school instead of at random (a third less time for the enrollment
    COPY of a first import). The ids stay random: only their order within one import follows."""

    def first_classes(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
        first: dict[str, str] = {}
        get = first.get
        for class_id, key in pairs:
            seen = get(key)
            if seen is None or class_id < seen:
                first[key] = class_id
        return first

    firsts = {STUDENT: first_classes(roster.enrollments), TEACHER: first_classes(roster.class_teachers)}
    order = sorted(range(len(create)), key=lambda i: (firsts[create[i][0]].get(create[i][1].key, ""), i))
    fresh = sorted(person_id() for _ in create)
    ids = [""] * len(create)
    for rank, index in enumerate(order):
        ids[index] = fresh[rank]
    return ids


def diff(
    roster: Roster,
    current: Current,
    policy: Policy,
    *,
    person_id: Callable[[], str] = new_person_id,
    account_id: Callable[[], str] = new_account_id,
    streamed: Streamed | None = None,
) -> Diff:
    """`streamed`: a first import whose rows apply.FirstImportStream wrote while the file was read. Its
    ids are taken over; its enrollments are counted, not planned (its students and their accounts are
    planned, and write_plan leaves them out)."""
    plan = Plan()
    changes = {name: Change() for name in ENTITIES}
    errors, warnings = Problems(), Problems()

    # schools and classes: keyed by the district's own IDs
    ch = changes["schools"]
    for school_id, school in roster.schools.items():
        known = current.schools.get(school_id)
        if known is None:
            plan.schools_new.append((school_id, school.name))
            ch.created += 1
            ch.sample("created", school_id)
            if ch.created <= CREATED_LISTED:
                fields: tuple[FieldChange, ...] = (("name", None, school.name),)
                ch.items.append(ChangeItem("school", "created", school_id, school.name, school.line, fields))
        elif known == (school.name, True):
            ch.unchanged += 1
        else:
            plan.schools_set.append((school_id, school.name))
            kind = _count_set(ch, school_id, reactivated=not known[1])
            fields = _fields(("name", known[0], school.name))
            ch.items.append(ChangeItem("school", kind, school_id, school.name, school.line, fields))
    for school_id, (name, active) in current.schools.items():
        if active and school_id not in roster.schools:
            plan.schools_off.append(school_id)
            ch.deactivated += 1
            ch.sample("deactivated", school_id)
            ch.items.append(ChangeItem("school", "deactivated", school_id, name, None))

    ch = changes["classes"]
    for class_id, klass in roster.classes.items():
        known_class = current.classes.get(class_id)
        if known_class is None:
            plan.classes_new.append((class_id, klass.school_id, klass.name))
            ch.created += 1
            ch.sample("created", class_id)
            if ch.created <= CREATED_LISTED:
                fields = (("school_id", None, klass.school_id), ("name", None, klass.name))
                ch.items.append(ChangeItem("class", "created", class_id, klass.name, klass.line, fields))
        elif known_class == (klass.school_id, klass.name, True):
            ch.unchanged += 1
        else:
            plan.classes_set.append((class_id, klass.school_id, klass.name))
            kind = _count_set(ch, class_id, reactivated=not known_class[2])
            fields = _fields(
                ("school_id", known_class[0], klass.school_id), ("name", known_class[1], klass.name)
            )
            ch.items.append(ChangeItem("class", kind, class_id, klass.name, klass.line, fields))
    for class_id, (_, name, active) in current.classes.items():
        if active and class_id not in roster.classes:
            plan.classes_off.append(class_id)
            ch.deactivated += 1
            ch.sample("deactivated", class_id)
            ch.items.append(ChangeItem("class", "deactivated", class_id, name, None))

    # people
    matched, create = _match_people(roster, current, errors)
    ids: dict[str, dict[str, str]] = {TEACHER: {}, STUDENT: {}}  # role -> roster key -> person id
    final_active: dict[str, bool] = {}
    email_only = 0
    for (role, key), row in matched.items():
        person = (roster.teachers if role == TEACHER else roster.students)[key]
        ids[role][key] = row.id
        final_active[row.id] = True
        clever_id: str | None
        source: str | None
        if person.clever_id is not None:
            clever_id, source = person.clever_id, "roster"
        elif row.clever_id_source == "login":
            clever_id, source = row.clever_id, "login"
        else:
            clever_id, source = None, None
            if person.sis_id is None:
                email_only += 1
        ch = changes["teachers" if role == TEACHER else "students"]
        if (
            row.active
            and row.clever_id == clever_id
            and row.email == person.email
            and row.first_name == person.first_name
            and row.last_name == person.last_name
            and row.grade == person.grade
            and row.sis_id == person.sis_id
            and row.clever_id_source == source
            and row.role == role
        ):
            ch.unchanged += 1  # (compared field by field: no tuple per person for the common case)
            continue
        plan.people_set.append(_values(row.id, role, clever_id, source, person))
        kind = _count_set(ch, key, reactivated=not row.active)
        ch.items.append(
            ChangeItem(
                role, kind, key, _full_name(person), person.line, _person_fields(row, clever_id, person)
            )
        )
    if streamed is not None:
        new_ids = [
            (streamed.person_ids.get(person.key) if role == STUDENT else None) or person_id()
            for role, person in create
        ]
    elif len(create) > len(matched):  # mostly a new roster (a first import): worth ordering the ids
        new_ids = _ids_by_first_class(roster, create, person_id)
    else:
        new_ids = [person_id() for _ in create]
    for (role, person), new_id in zip(create, new_ids, strict=True):
        key = person.key
        ids[role][key] = new_id
        final_active[new_id] = True
        plan.people_new.append(created_person(new_id, role, person))
        ch = changes["teachers" if role == TEACHER else "students"]
        ch.created += 1
        if person.clever_id is None and person.sis_id is None:
            email_only += 1
        if ch.created <= CREATED_LISTED:
            if ch.created <= SAMPLES:
                ch.sample("created", key)
            ch.items.append(_created_item(role, person))
    rows_by_id = {row.id: row for row in current.people}
    for row in current.people:
        if row.id in final_active:
            continue
        final_active[row.id] = False
        if row.active:
            plan.people_off.append(row.id)
            ch = changes["teachers" if row.role == TEACHER else "students"]
            ch.deactivated += 1
            ch.sample("deactivated", _row_key(row))
            name = f"{row.first_name} {row.last_name}".strip()
            ch.items.append(ChangeItem(row.role, "deactivated", _row_key(row), name, None))

    new_people: dict[str, PersonIn] = {}

    def who(person_id: str) -> tuple[str, str]:
        """How a listed change names a person: (stored Clever ID or email, else the roster's key; name)."""
        row = rows_by_id.get(person_id)
        if row is not None:
            return _row_key(row), f"{row.first_name} {row.last_name}".strip()
        if not new_people:  # built when the first link or account of a new person is listed
            new_people.update((new_id, person) for (_, person), new_id in zip(create, new_ids, strict=True))
        person = new_people.get(person_id)
        return (person.key, _full_name(person)) if person is not None else (person_id, "")

    def class_name(class_id: str) -> str:
        klass = roster.classes.get(class_id)
        if klass is not None:
            return klass.name
        stored = current.classes.get(class_id)
        return stored[1] if stored is not None else ""

    def person_label(person_id: str) -> str:
        return who(person_id)[0]

    # class teachers and enrollments: sets of (class, person)
    if not errors:
        teacher_ids, student_ids = ids[TEACHER], ids[STUDENT]
        _links(
            _by_person(roster.class_teachers, teacher_ids),
            current.class_teachers,
            plan.class_teachers_new,
            plan.class_teachers_on,
            plan.class_teachers_off,
            changes["class_teachers"],
            _Naming("class_teacher", who, class_name),
        )
        if streamed is not None and not current.enrollments:
            ch = changes["enrollments"]
            ch.created = len(roster.enrollments)
            firsts = [(c, student_ids[s]) for c, s in itertools.islice(roster.enrollments, 5000)]
            for class_id, person_id_ in _first(firsts, SAMPLES):
                ch.sample("created", f"{class_id} / {person_label(person_id_)}")
            for class_id, key in itertools.islice(roster.enrollments, CREATED_LISTED):
                student = roster.students[key]
                name = f"{class_name(class_id)} / {_full_name(student)}"
                ch.items.append(ChangeItem("enrollment", "created", f"{class_id} / {key}", name, None))
        else:
            _links(
                {student_ids[key]: classes for key, classes in roster.classes_of.items()},
                current.enrollments,
                plan.enrollments_new,
                plan.enrollments_on,
                plan.enrollments_off,
                changes["enrollments"],
                _Naming("enrollment", who, class_name),
            )

    # accounts: one per person and licensed product, active while both are
    ch = changes["accounts"]
    wanted: list[tuple[str, str]] = []
    if not current.accounts:  # none yet: one per active person and licensed product
        licensed = [product for product in policy.products if product in policy.licenses]
        wanted = [(person_id_, p) for person_id_, active in final_active.items() if active for p in licensed]
    else:
        _diff_accounts(final_active, current, policy, plan, ch, wanted, who)
    # The new ids are handed out in ascending order along the (person, product) order the rows are
    # written in, so both unique indexes of `account` grow at their right edge instead of taking a
    # random insert each (a third of the apply time of a first import went there). The ids stay
    # random: only their relative order within one import follows the key.
    given = streamed.account_ids if streamed is not None else {}
    wanted.sort()
    fresh = iter(sorted(account_id() for pair in wanted if pair not in given))
    for person_id_, product in wanted:
        new_account = given.get((person_id_, product)) or next(fresh)
        plan.accounts_new.append((person_id_, product, new_account))
        ch.created += 1
        if ch.created <= CREATED_LISTED:
            if ch.created <= SAMPLES:
                ch.sample("created", new_account)
            ch.items.append(_account_item("created", new_account, person_id_, product, who))

    seats: dict[str, dict[str, object]] = {}
    used = len(roster.students)
    for product, lic in sorted(policy.licenses.items()):
        seats[product] = {"licensed": lic.seats, "used": used, "enforced": lic.enforce_seats}
        if used > lic.seats:
            message = (
                f"{used} active students need {product} seats but the district has {lic.seats} "
                f"({used - lic.seats} over)."
            )
            if lic.enforce_seats:
                errors.add(
                    Problem(
                        None,
                        None,
                        Code.SEATS_EXCEEDED,
                        message,
                        "Remove students from the file, or ask RocketLit to raise the seat count.",
                    )
                )
            else:
                warnings.add(Problem(None, None, Code.SEATS_EXCEEDED, message))

    hold_reasons = _hold(changes, current, policy)
    return Diff(plan, changes, seats, hold_reasons, errors, warnings, email_only)


def _diff_accounts(
    final_active: dict[str, bool],
    current: Current,
    policy: Policy,
    plan: Plan,
    ch: Change,
    wanted: list[tuple[str, str]],
    who: Callable[[str], tuple[str, str]],
) -> None:
    """Existing accounts follow their person and license; `wanted` gets the ones to create. The stored
    accounts are read once, as they come (importing/stored_accounts.py); what changes is listed in
    (person, product) order."""
    products = set(policy.products)
    licensed = [product for product in policy.products if product in policy.licenses]
    held: dict[str, set[str]] = {product: set() for product in licensed}  # product -> people with one
    on: list[AccountRow] = []
    off: list[AccountRow] = []
    for row in _account_rows(current.accounts):
        person_id_, product, _, active = row
        person_active = final_active.get(person_id_)
        if person_active is None or product not in products:
            continue
        want = person_active and product in policy.licenses
        if want:
            held[product].add(person_id_)
            if active:
                ch.unchanged += 1
            else:
                on.append(row)
        elif active:
            off.append(row)
    wanted.extend(
        (person_id_, product)
        for person_id_, active in final_active.items()
        if active
        for product in licensed
        if person_id_ not in held[product]
    )
    for kind, rows, pairs in (("reactivated", on, plan.accounts_on), ("deactivated", off, plan.accounts_off)):
        rows.sort()
        pairs.extend((person_id_, product) for person_id_, product, _, _ in rows)
        setattr(ch, kind, len(rows))
        for person_id_, product, account_id, _ in rows[:LINKS_LISTED]:
            ch.sample(kind, account_id)
            ch.items.append(_account_item(kind, account_id, person_id_, product, who))


def _account_rows(accounts: dict[tuple[str, str], tuple[str, bool]] | StoredAccounts) -> Iterator[AccountRow]:
    if isinstance(accounts, StoredAccounts):
        return accounts.rows()
    return ((person, product, *account) for (person, product), account in accounts.items())


def _count_set(ch: Change, key: str, *, reactivated: bool) -> str:
    """Counts an update or reactivation; returns which."""
    if reactivated:
        ch.reactivated += 1
        ch.sample("reactivated", key)
        return "reactivated"
    ch.updated += 1
    ch.sample("updated", key)
    return "updated"


def _full_name(person: PersonIn) -> str:
    return f"{person.first_name} {person.last_name}"


def _fields(*candidates: FieldChange) -> tuple[FieldChange, ...]:
    """The fields whose value differs."""
    return tuple(c for c in candidates if c[1] != c[2])


def _person_fields(row: PersonRow, clever_id: str | None, person: PersonIn) -> tuple[FieldChange, ...]:
    return _fields(
        ("clever_id", row.clever_id, clever_id),
        ("email", row.email, person.email),
        ("first_name", row.first_name, person.first_name),
        ("last_name", row.last_name, person.last_name),
        ("grade", row.grade, person.grade),
        ("sis_id", row.sis_id, person.sis_id),
    )


def _created_item(role: str, person: PersonIn) -> ChangeItem:
    values = (
        ("clever_id", person.clever_id),
        ("email", person.email),
        ("first_name", person.first_name),
        ("last_name", person.last_name),
        ("grade", person.grade),
        ("sis_id", person.sis_id),
    )
    fields = tuple((name, None, value) for name, value in values if value is not None)
    return ChangeItem(role, "created", person.key, _full_name(person), person.line, fields)


def _account_item(
    kind: str, account_id: str, person_id: str, product: str, who: Callable[[str], tuple[str, str]]
) -> ChangeItem:
    key, name = who(person_id)
    fields: tuple[FieldChange, ...] = (("person", None, key), ("product", None, product))
    return ChangeItem("account", kind, account_id, name, None, fields if kind == "created" else ())


class _Naming(NamedTuple):
    """How a listed link change names its class and person."""

    entity: str  # class_teacher | enrollment
    who: Callable[[str], tuple[str, str]]
    class_name: Callable[[str], str]

    def item(self, kind: str, class_id: str, person_id: str) -> ChangeItem:
        key, name = self.who(person_id)
        return ChangeItem(
            self.entity, kind, f"{class_id} / {key}", f"{self.class_name(class_id)} / {name}", None
        )


def _by_person(pairs: Iterable[tuple[str, str]], ids: dict[str, str]) -> dict[str, list[str]]:
    """(class, roster key) pairs (each once) -> {person id: class ids}."""
    grouped: dict[str, list[str]] = {}
    get = grouped.get
    last_key: str | None = None
    classes: list[str] = []
    for class_id, key in pairs:
        if key is not last_key:  # a person's rows are usually consecutive
            last_key = key
            person_id = ids[key]
            found = get(person_id)
            if found is None:
                found = grouped[person_id] = []
            classes = found
        classes.append(class_id)
    return grouped


def _links(
    target: dict[str, list[str]],
    current: LinkStore,
    new: list[tuple[str, str]],
    on: list[tuple[str, str]],
    off: list[tuple[str, str]],
    ch: Change,
    naming: _Naming,
) -> None:
    """`target`: the class ids each person should be linked to (each once). The store compares
    (importing/links.py); with nothing stored, every pair is new, in the file's order."""
    if current:
        delta = current.compare(target)
    else:
        pairs = [(class_id, person_id) for person_id, classes in target.items() for class_id in classes]
        delta = LinkDelta(pairs, [], [], 0)
    new.extend(delta.new)
    on.extend(delta.on)
    off.extend(delta.off)
    ch.created, ch.reactivated, ch.deactivated = len(new), len(on), len(off)
    ch.unchanged = delta.unchanged
    for kind, pairs in (("created", new), ("reactivated", on), ("deactivated", off)):
        for class_id, person_id in _first(pairs, SAMPLES):
            ch.sample(kind, f"{class_id} / {naming.who(person_id)[0]}")
        listed = pairs[: CREATED_LISTED if kind == "created" else LINKS_LISTED]
        ch.items.extend(naming.item(kind, class_id, person_id) for class_id, person_id in listed)


def _first(items: list[tuple[str, str]], n: int) -> list[tuple[str, str]]:
    # samples, not a ranking: the smallest of the first few thousand keeps a million-row diff cheap
    # and small reports (and tests) deterministic
    return heapq.nsmallest(n, itertools.islice(items, 5000))


def _hold(changes: dict[str, Change], current: Current, policy: Policy) -> list[dict[str, object]]:
    """Clever's safety thresholds: more than X % of an entity deactivated or Y % updated holds it."""
    active_before = {
        "schools": sum(1 for _, active in current.schools.values() if active),
        "classes": sum(1 for *_, active in current.classes.values() if active),
        "teachers": sum(1 for r in current.people if r.active and r.role == TEACHER),
        "students": sum(1 for r in current.people if r.active and r.role == STUDENT),
        "enrollments": current.enrollments.active_count(),
    }
    reasons: list[dict[str, object]] = []
    for entity in HELD_ENTITIES:
        base = active_before[entity]
        if base == 0:
            continue
        ch = changes[entity]
        for kind, count, limit in (
            ("deactivated", ch.deactivated, policy.hold_deactivate_pct),
            ("updated", ch.updated, policy.hold_update_pct),
        ):
            pct = 100.0 * count / base
            if pct > limit:
                reasons.append(
                    {
                        "message": f"{count} of {base} {entity} ({pct:.1f} %) would be {kind}; the "
                        f"threshold is {limit:g} %.",
                        "entity": entity,
                        "change": kind,
                        "count": count,
                        "of": base,
                        "percent": round(pct, 1),
                        "threshold_percent": limit,
                    }
                )
    return reasons
