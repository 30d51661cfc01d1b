"""The roster read API: lookups, filters, order, pagination bounds, 404s and the error envelope."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from roster_api.roster import service

BASE = "/v1/districts/d1"


def cid(n: int) -> str:
    return f"{n:024x}"


@pytest.fixture
def read_headers(make_key: Callable[..., str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key('roster:read')}"}


@pytest.fixture
def world(roster: Any) -> dict[str, Any]:
    roster.district("d1", clever_district_id="d1" * 12, licenses={"rocketlit": 3, "innerorbit": 10})
    roster.district("d2", clever_district_id="d2" * 12)
    roster.school("d1", "lincoln", "Lincoln Elementary")
    roster.school("d1", "adams", "Adams Middle")
    roster.school("d1", "old", "Old School", active=False)
    roster.section("d1", "math-3", "lincoln", "Math 3")
    roster.section("d1", "art-7", "adams", "Art 7")
    roster.section("d1", "gone", "old", "Closed class", active=False)
    both = ("rocketlit", "innerorbit")
    t1 = roster.person(
        "d1", "teacher", clever_id=cid(1), email="tess.ng@d1.org", first="Tess", last="Ng", products=both
    )
    t2 = roster.person("d1", "teacher", email="al.ray@d1.org", first="Al", last="Ray", products=both)
    s1 = roster.person("d1", "student", clever_id=cid(11), first="Sam", last="Ito", grade="3", products=both)
    s2 = roster.person(
        "d1", "student", clever_id=cid(12), first="Ana", last="Garcia", grade="Kindergarten", products=both
    )
    s3 = roster.person(
        "d1", "student", clever_id=cid(13), first="Ben", last="Garcia", grade="3", products=both
    )
    s4 = roster.person(
        "d1", "student", clever_id=cid(14), first="Zed", last="Old", grade="7", active=False, products=both
    )
    s5 = roster.person(
        "d1", "student", email="100%_real@d1.org", first="Per%cent", last="Under_score", grade="7"
    )
    other = roster.person("d2", "student", clever_id=cid(11), first="Sam", last="Elsewhere")
    roster.teach("d1", "math-3", t1.person_id)
    roster.teach("d1", "art-7", t2.person_id)
    roster.teach("d1", "gone", t2.person_id, active=False)
    for s in (s1, s2, s3):
        roster.enroll("d1", "math-3", s.person_id)
    roster.enroll("d1", "art-7", s5.person_id)
    roster.enroll("d1", "art-7", s4.person_id, active=False)
    return {"t1": t1, "t2": t2, "s1": s1, "s2": s2, "s3": s3, "s4": s4, "s5": s5, "other": other}


def get(client: TestClient, headers: dict[str, str], path: str, **params: Any) -> Any:
    response = client.get(BASE + path, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def invalid(client: TestClient, headers: dict[str, str], path: str, field: str, **params: Any) -> None:
    response = client.get(BASE + path, params=params, headers=headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert field in {d["field"] for d in error["details"]}, error


def test_schools_filters_and_detail(client: TestClient, world: Any, read_headers: dict[str, str]) -> None:
    page = get(client, read_headers, "/schools")
    assert [s["school_id"] for s in page["items"]] == ["adams", "lincoln"]
    assert page["total"] == 2
    assert set(page["items"][0]) == {
        "school_id",
        "name",
        "active",
        "created_at",
        "updated_at",
        "deactivated_at",
    }
    assert [s["school_id"] for s in get(client, read_headers, "/schools", status="inactive")["items"]] == [
        "old"
    ]
    assert get(client, read_headers, "/schools", status="all")["total"] == 3
    assert [s["school_id"] for s in get(client, read_headers, "/schools", q="linc")["items"]] == ["lincoln"]
    detail = get(client, read_headers, "/schools/lincoln")
    assert detail["counts"] == {"classes": 1, "teachers": 1, "students": 3}
    missing = client.get(BASE + "/schools/nope", headers=read_headers)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "SCHOOL_NOT_FOUND"


def test_students_lookups(client: TestClient, world: Any, read_headers: dict[str, str]) -> None:
    page = get(client, read_headers, "/students")
    # stable order: last name, first name, id; inactive students left out by default
    assert [(s["last_name"], s["first_name"]) for s in page["items"]] == [
        ("Garcia", "Ana"),
        ("Garcia", "Ben"),
        ("Ito", "Sam"),
        ("Under_score", "Per%cent"),
    ]
    sam = page["items"][2]
    assert set(sam) == {
        "id",
        "role",
        "clever_id",
        "clever_id_source",
        "email",
        "first_name",
        "last_name",
        "grade",
        "active",
        "school_ids",
        "created_at",
        "updated_at",
        "deactivated_at",
    }
    assert sam["school_ids"] == ["lincoln"]
    assert sam["id"] == world["s1"].person_id

    by_id = get(client, read_headers, "/students", clever_id=cid(11).upper())
    assert [s["id"] for s in by_id["items"]] == [world["s1"].person_id]  # not d2's student with the same ID
    by_email = get(client, read_headers, "/students", email="  100%_REAL@d1.org ")
    assert [s["id"] for s in by_email["items"]] == [world["s5"].person_id]
    assert get(client, read_headers, "/students", q="garc")["total"] == 2
    assert [s["first_name"] for s in get(client, read_headers, "/students", q="ana garcia")["items"]] == [
        "Ana"
    ]
    assert [s["first_name"] for s in get(client, read_headers, "/students", q="Garcia, Ben")["items"]] == [
        "Ben"
    ]
    # LIKE wildcards in q are literal characters
    assert [s["last_name"] for s in get(client, read_headers, "/students", q="under_")["items"]] == [
        "Under_score"
    ]
    assert get(client, read_headers, "/students", q="%")["total"] == 0
    assert [s["first_name"] for s in get(client, read_headers, "/students", q="per%")["items"]] == [
        "Per%cent"
    ]

    assert get(client, read_headers, "/students", grade="03")["total"] == 2
    assert [
        s["first_name"] for s in get(client, read_headers, "/students", grade="kindergarten")["items"]
    ] == ["Ana"]
    assert get(client, read_headers, "/students", school_id="adams")["total"] == 1
    assert get(client, read_headers, "/students", class_id="math-3")["total"] == 3
    inactive = get(client, read_headers, "/students", status="inactive")
    assert [s["last_name"] for s in inactive["items"]] == ["Old"]
    assert inactive["items"][0]["school_ids"] == []
    # an inactive student is found through their former class when asked for inactive people
    assert get(client, read_headers, "/students", status="inactive", class_id="art-7")["total"] == 1
    assert get(client, read_headers, "/students", status="all")["total"] == 5


def test_student_and_teacher_detail(client: TestClient, world: Any, read_headers: dict[str, str]) -> None:
    by_clever = get(client, read_headers, f"/students/{cid(11).upper()}")
    by_person = get(client, read_headers, f"/students/{world['s1'].person_id}")
    assert by_clever == by_person
    assert by_person["classes"] == [
        {
            "class_id": "math-3",
            "name": "Math 3",
            "school_id": "lincoln",
            "class_active": True,
            "membership_active": True,
        }
    ]
    assert {a["product"] for a in by_person["accounts"]} == {"rocketlit", "innerorbit"}
    assert by_person["accounts"][0]["account_id"].startswith("acct_")

    al = get(client, read_headers, f"/teachers/{world['t2'].person_id}")
    assert al["clever_id"] is None
    assert al["school_ids"] == ["adams"]
    assert [(c["class_id"], c["membership_active"]) for c in al["classes"]] == [
        ("art-7", True),
        ("gone", False),
    ]

    # a student is not a teacher, and d2's people are not in d1
    for path, code in [
        (f"/teachers/{world['s1'].person_id}", "TEACHER_NOT_FOUND"),
        (f"/students/{world['other'].person_id}", "STUDENT_NOT_FOUND"),
        ("/students/p_nobody", "STUDENT_NOT_FOUND"),
    ]:
        response = client.get(BASE + path, headers=read_headers)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == code


def test_teachers_lookups(client: TestClient, world: Any, read_headers: dict[str, str]) -> None:
    page = get(client, read_headers, "/teachers")
    assert [t["last_name"] for t in page["items"]] == ["Ng", "Ray"]
    assert (
        get(client, read_headers, "/teachers", email="TESS.NG@D1.ORG")["items"][0]["id"]
        == world["t1"].person_id
    )
    assert get(client, read_headers, "/teachers", school_id="lincoln")["total"] == 1
    assert get(client, read_headers, "/teachers", class_id="gone")["total"] == 0  # no longer teaches it
    assert get(client, read_headers, "/teachers", class_id="gone", status="all")["total"] == 1
    assert get(client, read_headers, f"/teachers/{cid(1)}")["school_ids"] == ["lincoln"]


def test_classes(client: TestClient, world: Any, read_headers: dict[str, str]) -> None:
    page = get(client, read_headers, "/classes")
    assert [c["class_id"] for c in page["items"]] == ["art-7", "math-3"]
    assert get(client, read_headers, "/classes", status="all")["total"] == 3
    assert [c["class_id"] for c in get(client, read_headers, "/classes", school_id="lincoln")["items"]] == [
        "math-3"
    ]
    assert [c["class_id"] for c in get(client, read_headers, "/classes", teacher=cid(1))["items"]] == [
        "math-3"
    ]
    assert [
        c["class_id"] for c in get(client, read_headers, "/classes", student=world["s5"].person_id)["items"]
    ] == ["art-7"]
    assert [c["class_id"] for c in get(client, read_headers, "/classes", q="ma")["items"]] == ["math-3"]
    detail = get(client, read_headers, "/classes/art-7")
    assert [t["first_name"] for t in detail["teachers"]] == ["Al"]
    assert [(s["last_name"], s["active"], s["membership_active"]) for s in detail["students"]] == [
        ("Old", False, False),
        ("Under_score", True, True),
    ]
    missing = client.get(BASE + "/classes/nope", headers=read_headers)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "CLASS_NOT_FOUND"


def test_accounts_and_seats(client: TestClient, world: Any, read_headers: dict[str, str]) -> None:
    page = get(client, read_headers, "/accounts", product="innerorbit")
    # 2 teachers + 4 students (s5 has RocketLit only; s4 is inactive but the account row still is active)
    assert page["total"] == 6
    assert {a["product"] for a in page["items"]} == {"innerorbit"}
    assert get(client, read_headers, "/accounts", product="rocketlit", role="student")["total"] == 5
    mine = get(client, read_headers, "/accounts", person=cid(11))
    assert {a["product"] for a in mine["items"]} == {"rocketlit", "innerorbit"}
    assert (
        get(client, read_headers, "/accounts", person=cid(11))["items"][0]["person_id"]
        == world["s1"].person_id
    )
    seats = get(client, read_headers, "/seats")
    assert seats == {
        "district_id": "d1",
        "products": [
            {"product": "innerorbit", "licensed": 10, "used": 3, "remaining": 7, "enforce_seats": False},
            {"product": "rocketlit", "licensed": 3, "used": 4, "remaining": -1, "enforce_seats": False},
        ],
    }


def test_pagination_is_stable_and_complete(
    client: TestClient, world: Any, read_headers: dict[str, str]
) -> None:
    everyone = get(client, read_headers, "/students", status="all", limit=500)
    seen = []
    for offset in range(0, 6, 2):
        page = get(client, read_headers, "/students", status="all", limit=2, offset=offset)
        assert page["total"] == 5
        assert page["has_more"] is (offset + 2 < 5)
        assert page["limit"] == 2
        assert page["offset"] == offset
        seen += [s["id"] for s in page["items"]]
    assert seen == [s["id"] for s in everyone["items"]]
    assert len(set(seen)) == 5
    assert get(client, read_headers, "/students", offset=100)["items"] == []


def test_a_name_search_counts_up_to_the_cap_and_pages_on_with_has_more(
    client: TestClient, world: Any, read_headers: dict[str, str], roster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    roster.person("d1", "student", first="Ari", last="garcia")
    found = get(client, read_headers, "/students", q="garc")
    assert found["total"] == 3
    assert found["has_more"] is False
    # the order ignores case (bytewise, as the console's search): not "Garcia" before "garcia"
    assert [s["first_name"] for s in found["items"]] == ["Ana", "Ari", "Ben"]

    monkeypatch.setattr(service, "TOTAL_CAP", 2)  # a broad prefix in a large district, in small
    seen = []
    for offset in range(3):
        page = get(client, read_headers, "/students", q="garc", limit=1, offset=offset)
        assert page["total"] is None  # 3 matches: more than counted
        assert page["has_more"] is (offset < 2)
        seen += [s["first_name"] for s in page["items"]]
    assert seen == ["Ana", "Ari", "Ben"]
    assert get(client, read_headers, "/students", q="ana garcia")["total"] == 1  # under the cap: exact

    # the other filters still apply to a name search
    assert get(client, read_headers, "/students", q="old")["total"] == 0
    assert get(client, read_headers, "/students", q="old", status="all")["total"] == 1
    assert get(client, read_headers, "/students", q="garc", school_id="lincoln")["total"] == 2
    assert get(client, read_headers, "/students", q="garc", class_id="art-7")["total"] == 0
    assert get(client, read_headers, "/teachers", q="ng")["total"] == 1


def test_the_page_envelope_is_documented(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    people = schemas["CappedPage_PersonPublic_"]["properties"]
    assert {"type": "null"} in people["total"]["anyOf"]
    assert "1,000" in people["total"]["description"]
    assert people["has_more"]["type"] == "boolean"
    schools = schemas["Page_SchoolPublic_"]
    assert schools["properties"]["total"]["type"] == "integer"
    assert "has_more" in schools["required"]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/students", {"limit": 0}, "limit"),
        ("/students", {"limit": 501}, "limit"),
        ("/students", {"limit": "ten"}, "limit"),
        ("/students", {"offset": -1}, "offset"),
        ("/students", {"status": "deleted"}, "status"),
        ("/students", {"grade": "fourth"}, "grade"),
        ("/students", {"clever_id": "12345"}, "clever_id"),
        ("/students", {"email": "   "}, "email"),
        ("/students", {"q": ""}, "q"),
        ("/students", {"q": "  "}, "q"),
        ("/students", {"q": "x" * 101}, "q"),
        ("/teachers", {"school_id": ""}, "school_id"),
        ("/classes", {"status": "ACTIVE!"}, "status"),
        ("/accounts", {"product": "mathblaster"}, "product"),
        ("/accounts", {"role": "parent"}, "role"),
        ("/schools", {"limit": 10_000}, "limit"),
    ],
)
def test_bad_parameters_get_the_envelope(
    client: TestClient,
    world: Any,
    read_headers: dict[str, str],
    path: str,
    params: dict[str, Any],
    field: str,
) -> None:
    invalid(client, read_headers, path, field, **params)


def test_a_district_bound_key_reads_its_district_only(
    client: TestClient, world: Any, make_key: Callable[..., str]
) -> None:
    d2 = {"Authorization": f"Bearer {make_key('roster:read', district='d2')}"}
    for path in ("/students", f"/students/{cid(11)}", "/seats", "/classes/math-3"):
        response = client.get(BASE + path, headers=d2)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "DISTRICT_NOT_FOUND"
    mine = client.get("/v1/districts/d2/students", headers=d2).json()
    assert [s["last_name"] for s in mine["items"]] == ["Elsewhere"]


def test_reads_need_roster_read(client: TestClient, world: Any, make_key: Callable[..., str]) -> None:
    resolve_only = {"Authorization": f"Bearer {make_key('resolve')}"}
    assert client.get(BASE + "/students", headers=resolve_only).status_code == 403
    assert client.get(BASE + "/students").status_code == 401
