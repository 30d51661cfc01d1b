"""A OneRoster delta package is a patch: its records are upserts (`active`) or removals
(`tobedeleted`); records it does not mention stay as they are. It is merged into the district's
current roster (as OneRoster records keyed by sourcedId) and the result is imported like a bulk
package, so the diff deactivates exactly what the delta removed."""

from __future__ import annotations

import dataclasses

from roster_api.importing.csv_format import Code
from roster_api.importing.formats.oneroster import (
    BULK,
    DELTA,
    TO_BE_DELETED,
    Enrollment,
    Klass,
    Org,
    Package,
    User,
)
from roster_api.importing.formats.table import Report

CURRENT = "(current roster)"


def _merge_records(
    current: dict[str, Org] | dict[str, Klass] | dict[str, User],
    patch: dict[str, Org] | dict[str, Klass] | dict[str, User],
    mode: str,
) -> dict[str, object]:
    if mode == BULK:
        return dict(patch)  # a bulk file in a delta package replaces that kind of record
    merged: dict[str, object] = dict(current)
    for sid, record in patch.items():
        if record.status == TO_BE_DELETED:
            merged.pop(sid, None)
        else:
            merged[sid] = record
    return merged


def merge(current: Package, delta: Package, report: Report) -> Package:
    """`current` (bulk) patched with `delta`."""
    modes = delta.modes
    out = Package(delta.version, dict.fromkeys(modes, BULK), rows=delta.rows)
    out.orgs = _merge_records(current.orgs, delta.orgs, modes.get("orgs.csv", DELTA))  # type: ignore[assignment]
    out.classes = _merge_records(current.classes, delta.classes, modes.get("classes.csv", DELTA))  # type: ignore[assignment]
    users_mode = modes.get("users.csv", DELTA)
    out.users = _merge_records(current.users, delta.users, users_mode)  # type: ignore[assignment]
    for sid, user in out.users.items():
        known = current.users.get(sid)
        if not user.roles and known is not None:  # 1.2: a user row without roles.csv rows keeps its role
            out.users[sid] = dataclasses.replace(user, roles=set(known.roles))
    # enrollments: the current ones have no sourcedId of their own here, so both sides are keyed by
    # what they link (class, user, role)
    pairs = {(e.klass, e.user, e.role): e for e in current.enrollments.values()}
    if modes.get("enrollments.csv") == BULK:
        pairs = {}
    for enrollment in delta.enrollments.values():
        key = (enrollment.klass, enrollment.user, enrollment.role)
        if enrollment.status == TO_BE_DELETED:
            if not enrollment.klass or not enrollment.user:
                report.error(
                    enrollment.where.file,
                    enrollment.where.line,
                    "classSourcedId" if not enrollment.klass else "userSourcedId",
                    Code.MISSING_VALUE,
                    "A tobedeleted enrollment needs its classSourcedId and userSourcedId here.",
                    "Export delta rows with all their columns.",
                )
            pairs.pop(key, None)
        else:
            pairs[key] = enrollment
    # what the removals leave dangling goes with them (deactivated by the diff), silently
    out.enrollments = {
        f"{c}\x00{u}\x00{r}": e for (c, u, r), e in pairs.items() if c in out.classes and u in out.users
    }
    return out


def snapshot_user(sid: str, role: str, first: str, last: str, email: str | None, grade: str | None) -> User:
    """A stored person as a OneRoster user record (grades in our vocabulary are read back as they are)."""
    from roster_api.importing.formats.build import Where

    return User(Where(CURRENT, 0), "", first, last, email or "", grade or "", {role})


def snapshot(
    schools: dict[str, str],
    classes: dict[str, tuple[str, str]],
    users: dict[str, User],
    links: list[tuple[str, str, str]],
) -> Package:
    """The current roster as a bulk package: schools {id: name}, classes {id: (school, name)},
    users by sis id, links (class id, user sis id, role)."""
    from roster_api.importing.formats.build import Where

    here = Where(CURRENT, 0)
    package = Package("1.1", {})
    package.orgs = {sid: Org(here, "", name, "school") for sid, name in schools.items()}
    package.classes = {cid: Klass(here, "", name, school) for cid, (school, name) in classes.items()}
    package.users = users
    package.enrollments = {
        f"{c}\x00{u}\x00{r}": Enrollment(CURRENT, 0, "", c, u, r)
        for c, u, r in links
        if c in classes and u in users
    }
    return package
