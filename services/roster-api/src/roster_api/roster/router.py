"""Read API for support and internal tools (scope `roster:read`; a district-bound key sees only its
district, any other district is 404)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from roster_api.deps import ReadDistrictDep, SessionDep
from roster_api.errors import Invalid, NotFound, responses
from roster_api.pagination import CappedPage, Page, PageDep
from roster_api.roster import service
from roster_api.roster.schemas import (
    GRADES,
    AccountPublic,
    ClassDetail,
    ClassPublic,
    PersonDetail,
    PersonPublic,
    SchoolDetail,
    SchoolPublic,
    Seats,
    Status,
    canonical_grade,
)
from roster_shared.contracts import Product, RosterRole
from roster_shared.errors import ErrorCode

router = APIRouter(prefix="/v1/districts/{district_id}", tags=["roster"])

StatusQ = Annotated[Status, Query(description="active (default), inactive or all")]
NameQ = Annotated[
    str | None,
    Query(
        min_length=1, max_length=100, description="Name prefix, case-insensitive; two words: first and last"
    ),
]
CleverIdQ = Annotated[str | None, Query(pattern=r"^[0-9a-fA-F]{24}$", description="Clever ID (24 hex)")]
EmailQ = Annotated[
    str | None, Query(min_length=1, max_length=320, description="Exact email, case-insensitive")
]
SchoolQ = Annotated[str | None, Query(min_length=1, max_length=255, description="The district's school_id")]
ClassQ = Annotated[str | None, Query(min_length=1, max_length=255, description="The district's class_id")]
PersonRefQ = Annotated[
    str | None, Query(min_length=1, max_length=64, description="Person id (p_...) or Clever ID")
]
PersonRef = Annotated[str, Path(min_length=1, max_length=64, description="Person id (p_...) or Clever ID")]
SchoolId = Annotated[str, Path(min_length=1, max_length=255)]
ClassId = Annotated[str, Path(min_length=1, max_length=255)]


def _email(value: str | None) -> str | None:
    if value is None:
        return None
    normalized = value.strip().lower()
    if not normalized:
        raise Invalid("`email` must not be blank.", field="email")
    return normalized


def _grade(value: str | None) -> str | None:
    if value is None:
        return None
    grade = canonical_grade(value)
    if grade is None:
        raise Invalid(f"`grade` must be one of Clever's grades: {', '.join(GRADES)}.", field="grade")
    return grade


def _q(value: str | None) -> str | None:
    if value is None:
        return None
    if not value.strip():
        raise Invalid("`q` must not be blank.", field="q")
    return value.strip()


@router.get("/schools", responses=responses(404))
def list_schools(
    district: ReadDistrictDep,
    session: SessionDep,
    page: PageDep,
    status: StatusQ = Status.ACTIVE,
    q: NameQ = None,
) -> Page[SchoolPublic]:
    """Schools ordered by school_id; `q` is a name prefix."""
    items, total = service.list_schools(
        session=session, district_id=district.id, status=status, q=_q(q), limit=page.limit, offset=page.offset
    )
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/schools/{school_id}", responses=responses(404))
def get_school(district: ReadDistrictDep, session: SessionDep, school_id: SchoolId) -> SchoolDetail:
    school = service.get_school(session=session, district_id=district.id, school_id=school_id)
    if school is None:
        raise NotFound(
            f"School {school_id!r} was not found in this district.", code=ErrorCode.SCHOOL_NOT_FOUND
        )
    return school


def _list_people(
    role: RosterRole,
    district: ReadDistrictDep,
    session: SessionDep,
    page: PageDep,
    *,
    status: Status,
    q: str | None,
    clever_id: str | None,
    email: str | None,
    school_id: str | None,
    class_id: str | None,
    grade: str | None = None,
) -> CappedPage[PersonPublic]:
    items, total, more = service.list_people(
        session=session,
        district_id=district.id,
        role=role.value,
        status=status,
        q=_q(q),
        clever_id=clever_id.lower() if clever_id else None,
        email=_email(email),
        school_id=school_id,
        class_id=class_id,
        grade=_grade(grade),
        limit=page.limit,
        offset=page.offset,
    )
    return CappedPage(items=items, total=total, limit=page.limit, offset=page.offset, has_more=more)


@router.get("/teachers", responses=responses(404))
def list_teachers(
    district: ReadDistrictDep,
    session: SessionDep,
    page: PageDep,
    status: StatusQ = Status.ACTIVE,
    q: NameQ = None,
    clever_id: CleverIdQ = None,
    email: EmailQ = None,
    school_id: SchoolQ = None,
    class_id: ClassQ = None,
) -> CappedPage[PersonPublic]:
    """Teachers ordered by last name, first name, id. `school_id`/`class_id` match current classes for
    active teachers and any class for `status=inactive|all`. With `q`, the order ignores case and
    `total` counts up to 1,000 matches (null beyond: page on while `has_more`)."""
    return _list_people(
        RosterRole.TEACHER,
        district,
        session,
        page,
        status=status,
        q=q,
        clever_id=clever_id,
        email=email,
        school_id=school_id,
        class_id=class_id,
    )


@router.get("/teachers/{person}", responses=responses(404))
def get_teacher(district: ReadDistrictDep, session: SessionDep, person: PersonRef) -> PersonDetail:
    found = service.find_person(session=session, district_id=district.id, role="teacher", ref=person)
    if found is None:
        raise NotFound(
            f"Teacher {person!r} was not found in this district.", code=ErrorCode.TEACHER_NOT_FOUND
        )
    return service.person_detail(session=session, person=found)


@router.get("/students", responses=responses(404))
def list_students(
    district: ReadDistrictDep,
    session: SessionDep,
    page: PageDep,
    status: StatusQ = Status.ACTIVE,
    q: NameQ = None,
    clever_id: CleverIdQ = None,
    email: EmailQ = None,
    school_id: SchoolQ = None,
    class_id: ClassQ = None,
    grade: Annotated[
        str | None, Query(max_length=32, description="A Clever grade, e.g. Kindergarten, 3")
    ] = None,
) -> CappedPage[PersonPublic]:
    """Students ordered by last name, first name, id. `school_id`/`class_id` match current enrollments
    for active students and any enrollment for `status=inactive|all`. With `q`, the order ignores case
    and `total` counts up to 1,000 matches (null beyond: page on while `has_more`)."""
    return _list_people(
        RosterRole.STUDENT,
        district,
        session,
        page,
        status=status,
        q=q,
        clever_id=clever_id,
        email=email,
        school_id=school_id,
        class_id=class_id,
        grade=grade,
    )


@router.get("/students/{person}", responses=responses(404))
def get_student(district: ReadDistrictDep, session: SessionDep, person: PersonRef) -> PersonDetail:
    found = service.find_person(session=session, district_id=district.id, role="student", ref=person)
    if found is None:
        raise NotFound(
            f"Student {person!r} was not found in this district.", code=ErrorCode.STUDENT_NOT_FOUND
        )
    return service.person_detail(session=session, person=found)


@router.get("/classes", responses=responses(404))
def list_classes(
    district: ReadDistrictDep,
    session: SessionDep,
    page: PageDep,
    status: StatusQ = Status.ACTIVE,
    q: NameQ = None,
    school_id: SchoolQ = None,
    teacher: PersonRefQ = None,
    student: PersonRefQ = None,
) -> Page[ClassPublic]:
    """Classes ordered by class_id; filter by school, or by a teacher or student (person id or Clever ID)."""
    items, total = service.list_classes(
        session=session,
        district_id=district.id,
        status=status,
        q=_q(q),
        school_id=school_id,
        teacher_id=teacher,
        student_id=student,
        limit=page.limit,
        offset=page.offset,
    )
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/classes/{class_id}", responses=responses(404))
def get_class(district: ReadDistrictDep, session: SessionDep, class_id: ClassId) -> ClassDetail:
    """The class with all its teachers and students (`membership_active` false: no longer in the class)."""
    found = service.get_class(session=session, district_id=district.id, class_id=class_id)
    if found is None:
        raise NotFound(f"Class {class_id!r} was not found in this district.", code=ErrorCode.CLASS_NOT_FOUND)
    return found


@router.get("/accounts", responses=responses(404))
def list_accounts(
    district: ReadDistrictDep,
    session: SessionDep,
    page: PageDep,
    product: Product | None = None,
    status: StatusQ = Status.ACTIVE,
    role: RosterRole | None = None,
    person: PersonRefQ = None,
) -> Page[AccountPublic]:
    """Product accounts ordered by product, person name, account id."""
    items, total = service.list_accounts(
        session=session,
        district_id=district.id,
        product=product,
        status=status,
        role=role.value if role else None,
        person=person,
        limit=page.limit,
        offset=page.offset,
    )
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/seats", responses=responses(404))
def get_seats(district: ReadDistrictDep, session: SessionDep) -> Seats:
    """Per licensed product: seats licensed, used by active students, remaining."""
    return service.seats(session=session, district_id=district.id)
