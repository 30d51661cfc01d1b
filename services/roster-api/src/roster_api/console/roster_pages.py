"""Roster browsing (schools, classes, people, search) and login attempts with reference lookup."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response

from roster_api.accounts import service as accounts
from roster_api.accounts.rules import normalize_reference
from roster_api.console.web import PAGE_SIZE, ConsoleRoute, DistrictDep, SupportDep, render
from roster_api.deps import SessionDep
from roster_api.errors import NotFound
from roster_api.models import LoginAttempt, School
from roster_api.roster import service as roster
from roster_api.roster.schemas import PersonPublic, SchoolPublic, Status
from roster_shared.contracts import ResolveReason
from roster_shared.errors import ErrorCode

router = APIRouter(route_class=ConsoleRoute)

Offset = Annotated[int, Query(ge=0, le=10_000_000)]
Search = Annotated[str, Query(max_length=200)]
Ref = Annotated[str, PathParam(max_length=255)]


def _search_args(q: str) -> dict[str, str]:
    """One box for name, email or Clever ID."""
    q = q.strip()
    if not q:
        return {}
    if roster.is_clever_id(q):
        return {"clever_id": q.lower()}
    if "@" in q:
        return {"email": q}
    return {"q": q}


@router.get("/d/{district_id}/roster", include_in_schema=False)
def roster_page(
    request: Request,
    district: DistrictDep,
    session: SessionDep,
    q: Search = "",
    role: Annotated[str, Query(pattern="^(student|teacher)$")] = "student",
    offset: Offset = 0,
) -> Response:
    people: list[PersonPublic] = []
    schools: list[SchoolPublic] = []
    more = False
    schools_total = 0
    if q.strip():
        people, more = roster.search_people(
            session=session,
            district_id=district.id,
            role=role,
            limit=PAGE_SIZE,
            offset=offset,
            **_search_args(q),
        )
    else:
        schools, schools_total = roster.list_schools(
            session=session,
            district_id=district.id,
            status=Status.ALL,
            q=None,
            limit=PAGE_SIZE,
            offset=offset,
        )
    return render(
        request,
        "roster.html",
        {
            "title": "Roster",
            "district": district,
            "nav": "roster",
            "q": q,
            "role": role,
            "people": people,
            "more": more,
            "schools": schools,
            "schools_total": schools_total,
            "offset": offset,
            "limit": PAGE_SIZE,
        },
    )


@router.get("/d/{district_id}/schools/{school_id}", include_in_schema=False)
def school_page(
    request: Request, district: DistrictDep, session: SessionDep, school_id: Ref, offset: Offset = 0
) -> Response:
    # the school itself, not roster.get_school: its teacher and student counts take seconds for a
    # large school, and the page lists the classes (paged) anyway
    school = session.get(School, (district.id, school_id))
    if school is None:
        raise NotFound(f"School {school_id!r} was not found.", code=ErrorCode.SCHOOL_NOT_FOUND)
    classes, total = roster.list_classes(
        session=session,
        district_id=district.id,
        status=Status.ALL,
        q=None,
        school_id=school_id,
        teacher_id=None,
        student_id=None,
        limit=PAGE_SIZE,
        offset=offset,
    )
    return render(
        request,
        "school.html",
        {
            "title": school.name,
            "district": district,
            "nav": "roster",
            "school": school,
            "classes": classes,
            "total": total,
            "offset": offset,
            "limit": PAGE_SIZE,
        },
    )


@router.get("/d/{district_id}/classes/{class_id}", include_in_schema=False)
def class_page(request: Request, district: DistrictDep, session: SessionDep, class_id: Ref) -> Response:
    section = roster.get_class(session=session, district_id=district.id, class_id=class_id)
    if section is None:
        raise NotFound(f"Class {class_id!r} was not found.", code=ErrorCode.CLASS_NOT_FOUND)
    return render(
        request,
        "class.html",
        {"title": section.name, "district": district, "nav": "roster", "section": section},
    )


@router.get("/d/{district_id}/people/{role}/{person_ref}", include_in_schema=False)
def person_page(
    request: Request,
    district: DistrictDep,
    session: SessionDep,
    role: Annotated[str, PathParam(pattern="^(student|teacher)$")],
    person_ref: Ref,
) -> Response:
    person = roster.find_person(session=session, district_id=district.id, role=role, ref=person_ref)
    if person is None:
        code = ErrorCode.STUDENT_NOT_FOUND if role == "student" else ErrorCode.TEACHER_NOT_FOUND
        raise NotFound(f"No {role} {person_ref!r} in this district.", code=code)
    detail = roster.person_detail(session=session, person=person)
    logins: list[LoginAttempt] = []
    if person.clever_id:
        logins, _ = accounts.list_attempts(
            session=session,
            district_id=district.id,
            outcome=None,
            reason=None,
            since=None,
            until=None,
            clever_user_id=person.clever_id,
            digest=None,
            limit=10,
            offset=0,
        )
    name = f"{person.first_name} {person.last_name}".strip() or person.id
    return render(
        request,
        "person.html",
        {"title": name, "district": district, "nav": "roster", "person": detail, "logins": logins},
    )


@router.get("/d/{district_id}/logins", include_in_schema=False)
def logins_page(
    request: Request,
    district: DistrictDep,
    session: SessionDep,
    outcome: Annotated[str, Query(pattern="^(|success|failure)$")] = "",
    reason: Annotated[str, Query(max_length=32)] = "",
    clever_user_id: Annotated[str, Query(pattern=r"^([0-9a-fA-F]{24})?$")] = "",
    reference: Annotated[str, Query(max_length=32)] = "",
    offset: Offset = 0,
) -> Response:
    found = None
    looked_up = bool(reference.strip())
    if looked_up:
        attempt = accounts.get_attempt(session=session, reference=normalize_reference(reference))
        if attempt is not None and attempt.district_id == district.id:
            found = (attempt, accounts.roster_now(session=session, attempt=attempt))
    reasons = [r.value for r in ResolveReason]
    rows, total = accounts.list_attempts(
        session=session,
        district_id=district.id,
        outcome=outcome or None,
        reason=reason if reason in reasons else None,
        since=None,
        until=None,
        clever_user_id=clever_user_id.lower() or None,
        digest=None,
        limit=PAGE_SIZE,
        offset=offset,
    )
    return render(
        request,
        "logins.html",
        {
            "title": "Logins",
            "district": district,
            "nav": "logins",
            "rows": rows,
            "total": total,
            "offset": offset,
            "limit": PAGE_SIZE,
            "outcome": outcome,
            "reason": reason,
            "reasons": reasons,
            "clever_user_id": clever_user_id,
            "reference": reference,
            "looked_up": looked_up,
            "found": found,
        },
    )


@router.get("/lookup", include_in_schema=False)
def lookup(
    request: Request,
    console: SupportDep,
    session: SessionDep,
    reference: Annotated[str, Query(max_length=32)] = "",
) -> Response:
    """Support: any reference, including attempts from a Clever district not linked to any district."""
    found = None
    if reference.strip():
        attempt = accounts.get_attempt(session=session, reference=normalize_reference(reference))
        if attempt is not None:
            found = (attempt, accounts.roster_now(session=session, attempt=attempt))
    return render(
        request,
        "lookup.html",
        {
            "title": "Look up a login",
            "nav": "lookup",
            "reference": reference,
            "looked_up": bool(reference.strip()),
            "found": found,
        },
    )
