"""Reads of one district's roster. Every query is scoped by `district_id` first (docs/security.md T3)."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from roster_api.models import (
    Account,
    Enrollment,
    License,
    Person,
    School,
    Section,
    SectionTeacher,
    bytewise_lower,
)
from roster_api.pagination import TOTAL_CAP
from roster_api.roster.schemas import (
    AccountBrief,
    AccountPublic,
    ClassDetail,
    ClassMembership,
    ClassPublic,
    Member,
    PersonDetail,
    PersonPublic,
    SchoolCounts,
    SchoolDetail,
    SchoolPublic,
    Seats,
    SeatUse,
    Status,
)
from roster_shared.contracts import CLEVER_ID_PATTERN, Product

_Link = type[SectionTeacher] | type[Enrollment]
_CLEVER_ID = re.compile(CLEVER_ID_PATTERN)


def _link(role: str) -> _Link:
    return SectionTeacher if role == "teacher" else Enrollment


def _status(column: Any, status: Status) -> list[Any]:
    if status is Status.ACTIVE:
        return [col(column).is_(True)]
    if status is Status.INACTIVE:
        return [col(column).is_(False)]
    return []


def _like_prefix(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def _starts(column: Any, text: str) -> Any:
    return bytewise_lower(column).like(_like_prefix(text), escape="\\")


def _page(
    session: Session, query: Any, conditions: list[Any], order: list[Any], limit: int, offset: int
) -> tuple[list[Any], int]:
    total = session.exec(select(func.count()).select_from(query.where(*conditions).subquery())).one()
    rows = session.exec(query.where(*conditions).order_by(*order).limit(limit).offset(offset)).all()
    return list(rows), int(total)


# --- schools ----------------------------------------------------------------------------------------


def school_public(school: School) -> SchoolPublic:
    return SchoolPublic.model_validate(school, from_attributes=True)


def list_schools(
    *, session: Session, district_id: str, status: Status, q: str | None, limit: int, offset: int
) -> tuple[list[SchoolPublic], int]:
    conditions = [School.district_id == district_id, *_status(School.active, status)]
    if q:
        conditions.append(_starts(School.name, q))
    rows, total = _page(session, select(School), conditions, [col(School.school_id)], limit, offset)
    return [school_public(s) for s in rows], total


def get_school(*, session: Session, district_id: str, school_id: str) -> SchoolDetail | None:
    school = session.get(School, (district_id, school_id))
    if school is None:
        return None
    active_classes = select(Section.class_id).where(
        Section.district_id == district_id, Section.school_id == school_id, col(Section.active).is_(True)
    )

    def people(link: _Link) -> int:
        query = (
            select(func.count(sa.distinct(col(link.person_id))))
            .join(
                Person,
                sa.and_(
                    col(Person.district_id) == col(link.district_id), col(Person.id) == col(link.person_id)
                ),
            )
            .where(
                col(link.district_id) == district_id,
                col(link.class_id).in_(active_classes),
                col(link.active).is_(True),
                col(Person.active).is_(True),
            )
        )
        return int(session.exec(query).one())

    classes = session.exec(select(func.count()).select_from(active_classes.subquery())).one()
    counts = SchoolCounts(classes=int(classes), teachers=people(SectionTeacher), students=people(Enrollment))
    return SchoolDetail(**school_public(school).model_dump(), counts=counts)


# --- people -----------------------------------------------------------------------------------------


def _membership_filter(
    role: str, status: Status, *, school_id: str | None, class_id: str | None
) -> list[Any]:
    """Teachers/students of a school or class. For active people only current memberships (active link
    in an active class) count; for inactive or all, any membership does."""
    link = _link(role)
    conditions: list[Any] = []
    current = status is Status.ACTIVE
    if class_id is not None:
        where = [
            col(link.district_id) == col(Person.district_id),
            col(link.person_id) == col(Person.id),
            col(link.class_id) == class_id,
        ]
        if current:
            where.append(col(link.active).is_(True))
        conditions.append(sa.exists(select(link.person_id).where(*where)))
    if school_id is not None:
        where = [
            col(link.district_id) == col(Person.district_id),
            col(link.person_id) == col(Person.id),
            col(Section.school_id) == school_id,
        ]
        if current:
            where += [col(link.active).is_(True), col(Section.active).is_(True)]
        in_section = sa.and_(
            col(Section.district_id) == col(link.district_id), col(Section.class_id) == col(link.class_id)
        )
        conditions.append(sa.exists(select(link.person_id).join(Section, in_section).where(*where)))
    return conditions


def _name_branches(q: str) -> list[Any]:
    """One word: the last name starts with it, or the first name does. Two or more: first and last
    name, in either order ("Ana Lee", "Lee, Ana"). Each branch is one index range on PostgreSQL."""
    words = q.split()
    if len(words) == 1:
        return [_starts(Person.last_name, words[0]), _starts(Person.first_name, words[0])]
    first, rest = words[0], " ".join(words[1:])
    last, before = words[-1], " ".join(words[:-1])
    return [
        sa.and_(_starts(Person.first_name, first), _starts(Person.last_name, rest)),
        sa.and_(_starts(Person.last_name, before.rstrip(",")), _starts(Person.first_name, last)),
    ]


def school_ids_of(
    *, session: Session, district_id: str, role: str, person_ids: Sequence[str]
) -> dict[str, list[str]]:
    """The schools of each person, from their active classes. Two indexed lookups joined here: joined
    in SQL, PostgreSQL would rather hash every class of the district (42,000 at 170,000 students,
    ~25-70 ms) than look up the page's few hundred."""
    if not person_ids:
        return {}
    link = _link(role)
    links = session.exec(
        select(link.person_id, link.class_id).where(
            col(link.district_id) == district_id,
            col(link.person_id).in_(list(person_ids)),
            col(link.active).is_(True),
        )
    ).all()
    class_ids = sorted({class_id for _, class_id in links})
    school_of: dict[str, str] = {}
    if class_ids:
        rows = session.exec(
            select(Section.class_id, Section.school_id).where(
                Section.district_id == district_id,
                col(Section.class_id).in_(class_ids),
                col(Section.active).is_(True),
            )
        ).all()
        school_of = {class_id: school_id for class_id, school_id in rows}
    found: dict[str, set[str]] = defaultdict(set)
    for person_id, class_id in links:
        if class_id in school_of:
            found[person_id].add(school_of[class_id])
    return {pid: sorted(schools) for pid, schools in found.items()}


def person_public(person: Person, school_ids: list[str]) -> PersonPublic:
    return PersonPublic(
        id=person.id,
        role=person.role,
        clever_id=person.clever_id,
        clever_id_source=person.clever_id_source,
        email=person.email,
        first_name=person.first_name,
        last_name=person.last_name,
        grade=person.grade,
        active=person.active,
        school_ids=school_ids,
        created_at=person.created_at,
        updated_at=person.updated_at,
        deactivated_at=person.deactivated_at,
    )


def _people_conditions(
    *,
    district_id: str,
    role: str,
    status: Status,
    clever_id: str | None,
    email: str | None,
    school_id: str | None,
    class_id: str | None,
    grade: str | None,
) -> list[Any]:
    conditions: list[Any] = [
        Person.district_id == district_id,
        Person.role == role,
        *_status(Person.active, status),
    ]
    if clever_id is not None:
        conditions.append(Person.clever_id == clever_id)
    if email is not None:
        conditions.append(Person.email == email)
    if grade is not None:
        conditions.append(Person.grade == grade)
    return conditions + _membership_filter(role, status, school_id=school_id, class_id=class_id)


_PEOPLE_ORDER = [col(Person.last_name), col(Person.first_name), col(Person.id)]


def _people_public(
    session: Session, district_id: str, role: str, rows: Sequence[Person]
) -> list[PersonPublic]:
    schools = school_ids_of(
        session=session, district_id=district_id, role=role, person_ids=[p.id for p in rows]
    )
    return [person_public(p, schools.get(p.id, [])) for p in rows]


def list_people(
    *,
    session: Session,
    district_id: str,
    role: str,
    status: Status,
    q: str | None = None,
    clever_id: str | None = None,
    email: str | None = None,
    school_id: str | None = None,
    class_id: str | None = None,
    grade: str | None = None,
    limit: int,
    offset: int,
) -> tuple[list[PersonPublic], int | None, bool]:
    """A page of people, the number of matches and whether more follow. With a name (`q`), the page
    is taken like the console's search (`_name_page`, case ignored) and the matches are counted up to
    TOTAL_CAP only (None beyond): counting every student of a 170,000-student district whose name
    starts with "s" would read most of the district."""
    conditions = _people_conditions(
        district_id=district_id,
        role=role,
        status=status,
        clever_id=clever_id,
        email=email,
        school_id=school_id,
        class_id=class_id,
        grade=grade,
    )
    if q and q.split():
        rows = _name_page(session, district_id, conditions, q, limit, offset)
        total = _count_names(session, conditions, q)
        return _people_public(session, district_id, role, rows[:limit]), total, len(rows) > limit
    rows, counted = _page(session, select(Person), conditions, _PEOPLE_ORDER, limit, offset)
    return _people_public(session, district_id, role, rows), counted, offset + len(rows) < counted


# A name search's page order: one PostgreSQL index (models.PERSON_NAME_INDEXES) both finds a last-name
# prefix and returns it in this order.
_SEARCH_ORDER = [bytewise_lower(Person.last_name), bytewise_lower(Person.first_name), col(Person.id)]


def search_people(
    *,
    session: Session,
    district_id: str,
    role: str,
    q: str | None = None,
    clever_id: str | None = None,
    email: str | None = None,
    limit: int,
    offset: int,
) -> tuple[list[PersonPublic], bool]:
    """One page of people (active or not) matching a name, Clever ID or email, and whether more follow.
    No exact count: counting every match of a short name prefix reads a large district's whole roster,
    so this fetches one row more than the page instead."""
    conditions = _people_conditions(
        district_id=district_id,
        role=role,
        status=Status.ALL,
        clever_id=clever_id,
        email=email,
        school_id=None,
        class_id=None,
        grade=None,
    )
    if q and q.split():
        rows = _name_page(session, district_id, conditions, q, limit, offset)
    else:
        query = select(Person).where(*conditions).order_by(*_PEOPLE_ORDER).limit(limit + 1).offset(offset)
        rows = list(session.exec(query).all())
    return _people_public(session, district_id, role, rows[:limit]), len(rows) > limit


def _name_page(
    session: Session, district_id: str, conditions: list[Any], q: str, limit: int, offset: int
) -> list[Person]:
    """The page (and one more) of people whose name matches `q`, by last name, first name and id.

    An OR of name prefixes, sorted, is either a sort of every match (a prefix most people have: the
    whole district) or a walk in page order that reads the whole district when the matches are rare or
    sort late (~300 ms at 170,000 students). So each branch of the OR is asked apart for its first
    rows in page order, which an index gives directly (a last-name prefix is one range of it; a
    first-name prefix is picked out of it without reading the rows, or found through its own index
    when few people have it); the page is then taken from their union."""
    _plan_for_each_name(session)
    wanted = offset + limit + 1
    ids: set[str] = set()
    for branch in _name_branches(q):
        query = select(Person.id).where(*conditions, branch).order_by(*_SEARCH_ORDER).limit(wanted)
        ids.update(session.exec(query).all())
    if not ids:
        return []
    page = (
        select(Person)
        .where(Person.district_id == district_id, col(Person.id).in_(sorted(ids)))
        .order_by(*_SEARCH_ORDER)
        .offset(offset)
        .limit(limit + 1)
    )
    return list(session.exec(page).all())


def _count_names(session: Session, conditions: list[Any], q: str) -> int | None:
    """People whose name matches `q`, or None when more than TOTAL_CAP do. Each branch of the name OR
    is read in index order up to one past the cap (as `_name_page` reads a page): when none reaches
    it, their union is every match."""
    ids: set[str] = set()
    for branch in _name_branches(q):
        query = select(Person.id).where(*conditions, branch).order_by(*_SEARCH_ORDER).limit(TOTAL_CAP + 1)
        ids.update(session.exec(query).all())
    return len(ids) if len(ids) <= TOTAL_CAP else None


def _plan_for_each_name(session: Session) -> None:
    """psycopg prepares a statement run 5 times on a connection, and PostgreSQL may then plan it once
    for every value: such a generic plan cannot turn `lower(name) LIKE $1` into a range of the name
    indexes (the prefix is unknown) and walks the whole district instead (~150 ms at 170,000 students).
    So name searches are planned for their own prefix, for the rest of this transaction."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SET LOCAL plan_cache_mode = force_custom_plan"))


def is_clever_id(value: str) -> bool:
    return _CLEVER_ID.match(value.lower()) is not None


def find_person(*, session: Session, district_id: str, role: str, ref: str) -> Person | None:
    """`ref` is the person id (`p_...`) or their Clever ID."""
    condition = Person.clever_id == ref.lower() if is_clever_id(ref) else Person.id == ref
    return session.exec(
        select(Person).where(Person.district_id == district_id, Person.role == role, condition)
    ).first()


def person_detail(*, session: Session, person: Person) -> PersonDetail:
    link = _link(person.role)
    memberships = session.exec(
        select(Section, link.active)
        .join(
            link,
            sa.and_(
                col(link.district_id) == col(Section.district_id), col(link.class_id) == col(Section.class_id)
            ),
        )
        .where(col(link.district_id) == person.district_id, col(link.person_id) == person.id)
        .order_by(col(Section.class_id))
    ).all()
    accounts = session.exec(
        select(Account)
        .where(Account.district_id == person.district_id, Account.person_id == person.id)
        .order_by(col(Account.product))
    ).all()
    schools = school_ids_of(
        session=session, district_id=person.district_id, role=person.role, person_ids=[person.id]
    )
    return PersonDetail(
        **person_public(person, schools.get(person.id, [])).model_dump(),
        classes=[
            ClassMembership(
                class_id=section.class_id,
                name=section.name,
                school_id=section.school_id,
                class_active=section.active,
                membership_active=bool(link_active),
            )
            for section, link_active in memberships
        ],
        accounts=[
            AccountBrief(product=Product(a.product), account_id=a.account_id, active=a.active)
            for a in accounts
        ],
    )


# --- classes ----------------------------------------------------------------------------------------


def class_public(section: Section) -> ClassPublic:
    return ClassPublic.model_validate(section, from_attributes=True)


def list_classes(
    *,
    session: Session,
    district_id: str,
    status: Status,
    q: str | None,
    school_id: str | None,
    teacher_id: str | None,
    student_id: str | None,
    limit: int,
    offset: int,
) -> tuple[list[ClassPublic], int]:
    conditions: list[Any] = [Section.district_id == district_id, *_status(Section.active, status)]
    if q:
        conditions.append(_starts(Section.name, q))
    if school_id is not None:
        conditions.append(Section.school_id == school_id)
    for link, ref in ((SectionTeacher, teacher_id), (Enrollment, student_id)):
        if ref is None:
            continue
        person_match = col(Person.clever_id) == ref.lower() if is_clever_id(ref) else col(Person.id) == ref
        conditions.append(
            sa.exists(
                select(link.person_id)
                .join(
                    Person,
                    sa.and_(
                        col(Person.district_id) == col(link.district_id),
                        col(Person.id) == col(link.person_id),
                    ),
                )
                .where(
                    col(link.district_id) == col(Section.district_id),
                    col(link.class_id) == col(Section.class_id),
                    person_match,
                )
            )
        )
    rows, total = _page(session, select(Section), conditions, [col(Section.class_id)], limit, offset)
    return [class_public(s) for s in rows], total


def get_class(*, session: Session, district_id: str, class_id: str) -> ClassDetail | None:
    section = session.get(Section, (district_id, class_id))
    if section is None:
        return None

    def members(link: _Link) -> list[Member]:
        rows = session.exec(
            select(Person, link.active)
            .join(
                link,
                sa.and_(
                    col(link.district_id) == col(Person.district_id), col(link.person_id) == col(Person.id)
                ),
            )
            .where(col(link.district_id) == district_id, col(link.class_id) == class_id)
            .order_by(col(Person.last_name), col(Person.first_name), col(Person.id))
        ).all()
        return [
            Member(
                id=p.id,
                clever_id=p.clever_id,
                email=p.email,
                first_name=p.first_name,
                last_name=p.last_name,
                grade=p.grade,
                active=p.active,
                membership_active=bool(link_active),
            )
            for p, link_active in rows
        ]

    return ClassDetail(
        **class_public(section).model_dump(), teachers=members(SectionTeacher), students=members(Enrollment)
    )


# --- accounts and seats -----------------------------------------------------------------------------


def list_accounts(
    *,
    session: Session,
    district_id: str,
    product: Product | None,
    status: Status,
    role: str | None,
    person: str | None,
    limit: int,
    offset: int,
) -> tuple[list[AccountPublic], int]:
    query = select(Account, Person).join(
        Person,
        sa.and_(
            col(Person.district_id) == col(Account.district_id), col(Person.id) == col(Account.person_id)
        ),
    )
    conditions: list[Any] = [Account.district_id == district_id, *_status(Account.active, status)]
    if product is not None:
        conditions.append(Account.product == product.value)
    if role is not None:
        conditions.append(Person.role == role)
    if person is not None:
        conditions.append(Person.clever_id == person.lower() if is_clever_id(person) else Person.id == person)
    order = [col(Account.product), col(Person.last_name), col(Person.first_name), col(Account.account_id)]
    rows, total = _page(session, query, conditions, order, limit, offset)
    return [
        AccountPublic(
            account_id=a.account_id,
            product=Product(a.product),
            active=a.active,
            person_id=p.id,
            role=p.role,
            clever_id=p.clever_id,
            first_name=p.first_name,
            last_name=p.last_name,
            person_active=p.active,
            created_at=a.created_at,
        )
        for a, p in rows
    ], total


def seats(*, session: Session, district_id: str) -> Seats:
    return seats_of(
        session=session, district_id=district_id, used=seats_used(session=session, district_id=district_id)
    )


def seats_used(*, session: Session, district_id: str) -> dict[str, int]:
    """Per product: active students with an active account. Reads every account of the district
    (hundreds of ms at 170,000 students): the console's overview takes it from roster.figures."""
    used_rows = session.exec(
        select(Account.product, func.count())
        .join(
            Person,
            sa.and_(
                col(Person.district_id) == col(Account.district_id), col(Person.id) == col(Account.person_id)
            ),
        )
        .where(
            col(Account.district_id) == district_id,
            col(Account.active).is_(True),
            col(Person.active).is_(True),
            col(Person.role) == "student",
        )
        .group_by(col(Account.product))
    ).all()
    return {product: int(n) for product, n in used_rows}


def seats_of(*, session: Session, district_id: str, used: dict[str, int]) -> Seats:
    """The district's licenses (always current) with the given seats used."""
    licenses = session.exec(
        select(License).where(License.district_id == district_id).order_by(col(License.product))
    ).all()
    return Seats(
        district_id=district_id,
        products=[
            SeatUse(
                product=Product(lic.product),
                licensed=lic.seats,
                used=used.get(lic.product, 0),
                remaining=lic.seats - used.get(lic.product, 0),
                enforce_seats=lic.enforce_seats,
            )
            for lic in licenses
        ],
    )
