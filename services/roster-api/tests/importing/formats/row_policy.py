"""The row-policy tests' shared steps: upload a package to district d1 over the API and run the
worker; read back people, classes and links by the district's own ids."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from roster_api.jobs.worker import ImportWorker
from roster_api.settings import Settings


def import_zip(
    client: TestClient, headers: dict[str, str], settings: Settings, engine: sa.Engine, body: bytes
) -> Any:
    response = client.post(
        "/v1/districts/d1/imports", content=body, headers={**headers, "Content-Type": "application/zip"}
    )
    assert response.status_code == 202, response.text
    ImportWorker(engine=engine, settings=settings).run_until_idle()
    done = client.get(f"/v1/imports/{response.json()['id']}", headers=headers)
    assert done.status_code == 200
    return done.json()


def roster_state(engine: sa.Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        people = conn.execute(sa.text("select sis_id, role, first_name, active from person"))
        classes = conn.execute(sa.text("select class_id, name, active from section"))
        links = [
            conn.execute(
                sa.text(
                    f"select l.class_id, p.sis_id, l.active from {table} l "  # noqa: S608
                    "join person p on p.id = l.person_id"
                )
            ).all()
            for table in ("enrollment", "section_teacher")
        ]
        return {
            "people": {sis: (role, first, bool(active)) for sis, role, first, active in people},
            "classes": {cid: (name, bool(active)) for cid, name, active in classes},
            "enrollments": {(c, s): bool(a) for c, s, a in links[0]},
            "class_teachers": {(c, s): bool(a) for c, s, a in links[1]},
        }
