"""The district's current roster as OneRoster records (what a delta package patches): its active
schools and classes by their ids, its active people by their sis_id, and their class links. A person
without a sis_id (imported from a v1 file without one) cannot be named by a delta; the reader warns."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from roster_api.importing.formats.delta import snapshot, snapshot_user
from roster_api.importing.formats.oneroster import Package, User

_SCHOOLS = "SELECT school_id, name FROM school WHERE district_id = :d AND active"
_CLASSES = "SELECT class_id, school_id, name FROM section WHERE district_id = :d AND active"
_PEOPLE = (
    "SELECT id, role, sis_id, first_name, last_name, email, grade FROM person "
    "WHERE district_id = :d AND active AND sis_id IS NOT NULL"
)
_LINKS = "SELECT l.class_id, l.person_id FROM {table} l WHERE l.district_id = :d AND l.active"


def load_package(conn: sa.Connection, district_id: str) -> Package:
    params = {"d": district_id}
    schools = {sid: name for sid, name in conn.execute(sa.text(_SCHOOLS), params)}
    classes = {cid: (school, name) for cid, school, name in conn.execute(sa.text(_CLASSES), params)}
    users: dict[str, User] = {}
    sis_of: dict[str, tuple[str, str]] = {}  # person id -> (sis id, role)
    for pid, role, sis_id, first, last, email, grade in conn.execute(sa.text(_PEOPLE), params):
        users[sis_id] = snapshot_user(sis_id, role, first, last, email, grade)
        sis_of[pid] = (sis_id, role)
    links: list[tuple[str, str, str]] = []
    for table in ("section_teacher", "enrollment"):
        for class_id, person_id in conn.execute(sa.text(_LINKS.format(table=table)), params):
            found = sis_of.get(person_id)
            if found is not None:
                links.append((class_id, found[0], found[1]))
    return snapshot(schools, classes, users, links)


def loader(conn: sa.Connection, district_id: str) -> Callable[[], Package]:
    """What `formats.read_upload(current=...)` takes: loads only when the package is a delta."""
    return lambda: load_package(conn, district_id)
