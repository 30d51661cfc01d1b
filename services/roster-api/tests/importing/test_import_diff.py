"""The diff against a current roster, as plain data: identity rules, deactivation and return, accounts,
seats and the safety hold."""

from __future__ import annotations

import itertools
from typing import TypedDict, Unpack

from hypothesis import given, settings
from hypothesis import strategies as st

from roster_api.importing.csv_format import Code
from roster_api.importing.diff import (
    AscendingIds,
    Change,
    Current,
    Diff,
    LicenseRow,
    Links,
    PersonRow,
    Policy,
    _links,
    _Naming,
    diff,
)
from roster_api.importing.normalize import Roster, normalize
from roster_api.importing.parse import parse_bytes

from .import_rows import HEADER, S1, S2, T1, csv_bytes, row, student

BOTH = {"rocketlit": LicenseRow(100, False), "innerorbit": LicenseRow(100, False)}


def roster(rows: list[dict[str, str]], header: list[str] | None = None) -> Roster:
    result = normalize(parse_bytes(csv_bytes(rows, header)))
    assert not result.errors, result.errors.sorted()
    return result


class Holds(TypedDict, total=False):
    """The safety-hold thresholds a test may set; `Policy`'s defaults otherwise."""

    hold_deactivate_pct: float
    hold_update_pct: float


def run(
    r: Roster, current: Current, licenses: dict[str, LicenseRow] | None = None, **policy: Unpack[Holds]
) -> Diff:
    ids = (f"p_new{n}" for n in itertools.count(1))
    accounts = (f"acct_new{n}" for n in itertools.count(1))
    return diff(
        r,
        current,
        Policy(licenses=BOTH if licenses is None else licenses, **policy),
        person_id=lambda: next(ids),
        account_id=lambda: next(accounts),
    )


def person(
    pid: str,
    role: str,
    clever_id: str | None,
    email: str | None,
    *,
    source: str | None = None,
    first: str = "Arnold",
    last: str = "Perlstein",
    grade: str | None = "3",
) -> PersonRow:
    """An active person; `source` (how the Clever ID was bound) is "roster" unless given."""
    source = source or ("roster" if clever_id else None)
    return PersonRow(pid, role, clever_id, source, email, first, last, grade, True)


def current_for(r: Roster, people: list[PersonRow]) -> Current:
    """The current roster equal to `r`'s schools and classes, with the given people."""
    return Current(
        schools={k: (v.name, True) for k, v in r.schools.items()},
        classes={k: (v.school_id, v.name, True) for k, v in r.classes.items()},
        people=people,
    )


TEACHER = person(
    "p_t", "teacher", T1, "ms.frizzle@springfield.example.org", first="Valerie", last="Frizzle", grade=None
)


def test_first_import_creates_everything_with_an_account_per_licensed_product() -> None:
    result = run(roster([row(), student(2)]), Current())
    assert [len(result.plan.people_new), len(result.plan.enrollments_new)] == [3, 2]
    assert len(result.plan.accounts_new) == 6
    assert {p for _, p, _ in result.plan.accounts_new} == {"rocketlit", "innerorbit"}
    assert not result.held


def test_clever_id_wins_over_a_changed_email() -> None:
    r = roster([row(student_email="new.address@springfield.example.org")])
    existing = person("p_1", "student", S1, "arnold@springfield.example.org")
    result = run(r, current_for(r, [existing, TEACHER]))
    assert result.plan.people_new == []
    (update,) = result.plan.people_set
    assert update[0] == "p_1"
    assert update[4] == "new.address@springfield.example.org"
    assert result.changes["students"].updated == 1


def test_email_only_roster_matches_by_email() -> None:
    header = [h for h in HEADER if not h.endswith("clever_id")]
    r = roster([row(student_email="Arnold@Springfield.example.org")], header)
    existing = person("p_1", "student", None, "arnold@springfield.example.org")
    teacher = person(
        "p_t",
        "teacher",
        None,
        "ms.frizzle@springfield.example.org",
        first="Valerie",
        last="Frizzle",
        grade=None,
    )
    result = run(r, current_for(r, [existing, teacher]))
    assert result.plan.people_new == []
    assert result.plan.people_set == []
    assert result.changes["students"].unchanged == 1


def test_clever_id_bound_at_login_is_kept_while_the_roster_has_none() -> None:
    header = [h for h in HEADER if h != "student_clever_id"]
    r = roster([row()], header)
    bound = person("p_1", "student", S1, "arnold@springfield.example.org", source="login")
    result = run(r, current_for(r, [bound, TEACHER]))
    assert result.plan.people_set == []
    assert result.plan.people_new == []


def test_roster_clever_id_dropped_from_the_file_is_cleared() -> None:
    header = [h for h in HEADER if h != "student_clever_id"]
    r = roster([row()], header)
    rostered = person("p_1", "student", S1, "arnold@springfield.example.org", source="roster")
    (update,) = run(r, current_for(r, [rostered, TEACHER])).plan.people_set
    assert update[0] == "p_1"
    assert update[2] is None
    assert update[3] is None


def test_new_clever_id_adopts_the_email_only_person_and_keeps_the_account() -> None:
    r = roster([row()])
    email_only = person("p_1", "student", None, "arnold@springfield.example.org")
    current = current_for(r, [email_only, TEACHER])
    current.accounts = {("p_1", "rocketlit"): ("acct_1", True), ("p_t", "rocketlit"): ("acct_t", True)}
    result = run(r, current, {"rocketlit": LicenseRow(10, False)})
    (update,) = result.plan.people_set
    assert update[:4] == ("p_1", "student", S1, "roster")
    assert result.plan.accounts_new == []


def test_clever_id_of_a_teacher_cannot_become_a_student() -> None:
    r = roster([row(student_clever_id=S2, student_email="s2@x.org")])
    result = run(r, current_for(r, [person("p_9", "teacher", S2, "s2@x.org"), TEACHER]))
    (error,) = result.errors.listed
    assert (error.code, error.line, error.column) == (Code.CLEVER_ID_ROLE_CHANGED, 2, "student_clever_id")


def test_absent_people_are_deactivated_with_their_accounts_and_come_back() -> None:
    r = roster([row()])
    gone = person("p_2", "student", S2, "gone@x.org")
    current = current_for(r, [person("p_1", "student", S1, "arnold@springfield.example.org"), TEACHER, gone])
    current.accounts = {("p_2", "rocketlit"): ("acct_2", True)}
    current.enrollments = Links.of({("cls-1", "p_2"): True})
    result = run(r, current, {"rocketlit": LicenseRow(10, False)}, hold_deactivate_pct=100)
    assert result.plan.people_off == ["p_2"]
    assert result.plan.accounts_off == [("p_2", "rocketlit")]
    assert result.plan.enrollments_off == [("cls-1", "p_2")]

    back = roster([row(), row(student_clever_id=S2, student_email="gone@x.org")])
    current.people[2] = gone._replace(active=False)
    current.accounts[("p_2", "rocketlit")] = ("acct_2", False)
    current.enrollments = Links.of({("cls-1", "p_2"): False})
    result = run(back, current, {"rocketlit": LicenseRow(10, False)})
    assert [p[0] for p in result.plan.people_set] == ["p_2"]
    assert result.changes["students"].reactivated == 1
    assert result.plan.accounts_on == [("p_2", "rocketlit")]
    assert result.plan.enrollments_on == [("cls-1", "p_2")]
    assert ("p_2", "rocketlit", "acct_new1") not in result.plan.accounts_new


def test_unlicensed_product_accounts_become_inactive() -> None:
    r = roster([row()])
    current = current_for(r, [person("p_1", "student", S1, "arnold@springfield.example.org"), TEACHER])
    current.accounts = {("p_1", "innerorbit"): ("acct_1", True)}
    result = run(r, current, {"rocketlit": LicenseRow(10, False)})
    assert result.plan.accounts_off == [("p_1", "innerorbit")]


def test_identical_roster_changes_nothing() -> None:
    r = roster([row(), student(2)])
    first = run(r, Current())
    p = first.plan
    current = Current(
        schools={s: (n, True) for s, n in p.schools_new},
        classes={c: (s, n, True) for c, s, n in p.classes_new},
        people=[PersonRow(*v[:8], True, v[8]) for v in p.people_new],
        class_teachers=Links.of(dict.fromkeys(p.class_teachers_new, True)),
        enrollments=Links.of(dict.fromkeys(p.enrollments_new, True)),
        accounts={(pid, prod): (a, True) for pid, prod, a in p.accounts_new},
    )
    again = run(r, current)
    assert again.plan.write_count() == 0
    assert again.changes["enrollments"].unchanged == 2


def hold_case(kept: int, total: int, **policy: Unpack[Holds]) -> Diff:
    rows = [student(n) for n in range(1, kept + 1)]
    r = roster(rows)
    people = [TEACHER] + [
        person(
            f"p_{n}", "student", f"{n:024x}", f"kid{n}@springfield.example.org", first=f"Kid{n}", last="Doe"
        )
        for n in range(1, total + 1)
    ]
    return run(r, current_for(r, people), **policy)


def test_more_than_ten_percent_deactivated_is_held() -> None:
    assert not hold_case(18, 20).held  # exactly 10 %
    held = hold_case(17, 20)
    assert held.held
    (reason,) = held.hold_reasons
    assert reason["entity"] == "students"
    assert reason["change"] == "deactivated"
    assert reason["count"] == 3


def test_hold_threshold_is_per_district() -> None:
    assert not hold_case(17, 20, hold_deactivate_pct=20).held


def test_more_than_75_percent_updated_is_held() -> None:
    rows = [student(n, student_grade_level="4") for n in range(1, 5)]
    r = roster(rows)
    people = [TEACHER] + [
        person(
            f"p_{n}", "student", f"{n:024x}", f"kid{n}@springfield.example.org", first=f"Kid{n}", last="Doe"
        )
        for n in range(1, 5)
    ]
    result = run(r, current_for(r, people))
    assert result.held
    assert result.hold_reasons[0]["change"] == "updated"


def test_seats_over_the_license_warn_or_block() -> None:
    r = roster([row(), student(2), student(3)])
    warned = run(r, Current(), {"rocketlit": LicenseRow(2, False)})
    assert not warned.errors
    assert [p.code for p in warned.warnings.listed] == [Code.SEATS_EXCEEDED]
    assert warned.seats["rocketlit"] == {"licensed": 2, "used": 3, "enforced": False}
    blocked = run(r, Current(), {"rocketlit": LicenseRow(2, True)})
    assert [p.code for p in blocked.errors.listed] == [Code.SEATS_EXCEEDED]


def test_new_ids_ascend_along_the_write_order_so_the_indexes_fill_in_order() -> None:
    # the file's order is not the classes' order: ids follow each person's first class, and accounts
    # follow (person, product), with the real (random) id sources
    rows = [
        student(1, class_id="cls-9"),
        student(2, class_id="cls-1"),
        student(3, class_id="cls-5"),
        student(2, class_id="cls-9"),
    ]
    result = diff(roster(rows), Current(), Policy(licenses=BOTH))
    ids = {values[2]: values[0] for values in result.plan.people_new}
    assert ids[f"{2:024x}"] < ids[f"{3:024x}"] < ids[f"{1:024x}"]
    accounts = sorted(result.plan.accounts_new)
    assert len(accounts) == 8
    assert [a for *_, a in accounts] == sorted(a for *_, a in accounts)


PAIRS = st.sets(st.tuples(st.sampled_from(["c1", "c2", "c3", "c4"]), st.sampled_from(["p1", "p2", "p3"])))


@settings(max_examples=300, deadline=None)
@given(
    target=PAIRS,
    stored=st.dictionaries(
        st.tuples(st.sampled_from(["c1", "c2", "c3", "c5"]), st.sampled_from(["p1", "p2", "p3", "p4"])),
        st.booleans(),
    ),
)
def test_links_diff_is_the_set_algebra_of_pairs(
    target: set[tuple[str, str]], stored: dict[tuple[str, str], bool]
) -> None:
    """Grouped by person (diff._links), the result is exactly: new = target - stored, reactivated =
    target & stored inactive, deactivated = stored active - target."""
    grouped: dict[str, list[str]] = {}
    for class_id, person_id in sorted(target):
        grouped.setdefault(person_id, []).append(class_id)
    new: list[tuple[str, str]] = []
    on: list[tuple[str, str]] = []
    off: list[tuple[str, str]] = []
    change = Change()
    _links(grouped, Links.of(stored), new, on, off, change, _Naming("enrollment", lambda p: (p, ""), str))
    active = {pair for pair, is_active in stored.items() if is_active}
    inactive = set(stored) - active
    assert sorted(new) == sorted(target - set(stored))
    assert sorted(on) == sorted(target & inactive)
    assert sorted(off) == sorted(active - target)
    assert change.unchanged == len(target & active)
    assert (change.created, change.reactivated, change.deactivated) == (len(new), len(on), len(off))


def test_ascending_ids_ascend_one_by_one_and_in_bulk_and_stay_random() -> None:
    ids = AscendingIds("acct_")
    drawn = [ids(), *ids.take(1000), ids()]
    assert drawn == sorted(drawn)
    assert len(set(drawn)) == len(drawn)
    assert all(len(i) == len("acct_") + 24 for i in drawn)
    # the part after the sequence is random: two generators do not repeat each other
    assert {i[13:] for i in AscendingIds("acct_").take(50)}.isdisjoint(i[13:] for i in drawn)
