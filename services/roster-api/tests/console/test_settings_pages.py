"""The settings page's row policy (`sync.on_row_errors`) and result notices (contacts, webhook): saved
with CSRF and audited, refused by the field when not valid, the webhook secret shown once."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from roster_api.models import AuditEvent, District, NoticeSetting

SETTINGS = "/console/d/d1/settings"


def _audits(engine: sa.Engine, action: str) -> list[AuditEvent]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(AuditEvent)
                .where(AuditEvent.district_id == "d1", AuditEvent.action == action)
                .order_by(col(AuditEvent.id))
            ).all()
        )


def _district(engine: sa.Engine) -> District:
    with Session(engine) as session:
        district = session.get(District, "d1")
        assert district is not None
        return district


def _notices(engine: sa.Engine) -> NoticeSetting | None:
    with Session(engine) as session:
        return session.get(NoticeSetting, "d1")


def test_row_policy_is_saved_audited_and_refused_by_its_field(
    as_d1_admin: TestClient, roster_engine: sa.Engine, page_csrf: Callable[[str], str]
) -> None:
    page = as_d1_admin.get(SETTINGS)
    assert 'name="on_row_errors" value="reject" checked' in page.text
    saved = as_d1_admin.post(
        f"{SETTINGS}/sync", data={"csrf_token": page_csrf(SETTINGS), "on_row_errors": "skip"}
    )
    assert saved.status_code == 303, saved.text
    assert _district(roster_engine).on_row_errors == "skip"
    assert _audits(roster_engine, "district.update")[-1].details["on_row_errors"] == "skip"
    assert 'name="on_row_errors" value="skip" checked' in as_d1_admin.get(SETTINGS).text

    refused = as_d1_admin.post(
        f"{SETTINGS}/sync",
        data={"csrf_token": page_csrf(SETTINGS), "on_row_errors": "ignore", "hold_expire_days": "0"},
    )
    assert refused.status_code == 422
    assert '<p class="field-error" id="on_row_errors-error">Rows with errors:' in refused.text
    assert '<p class="field-error" id="hold_expire_days-error">Days before a hold expires:' in refused.text
    assert 'id="hold_expire_days" name="hold_expire_days" value="0"' in refused.text  # as typed
    assert _district(roster_engine).on_row_errors == "skip"
    assert _district(roster_engine).hold_expire_days == 14


def test_notice_settings_are_saved_audited_and_the_secret_shown_once(
    as_d1_admin: TestClient, roster_engine: sa.Engine, page_csrf: Callable[[str], str]
) -> None:
    form = {
        "contacts": "it-team@d1.example.org\nRegistrar@D1.example.org",
        "webhook_url": "https://sis.d1.example.org/roster-events",
    }
    first = as_d1_admin.post(f"{SETTINGS}/notices", data={"csrf_token": page_csrf(SETTINGS), **form})
    assert first.status_code == 200, first.text
    row = _notices(roster_engine)
    assert row is not None
    assert row.webhook_secret
    assert row.contacts == ["it-team@d1.example.org", "Registrar@d1.example.org"]
    assert f'id="webhook-secret">{row.webhook_secret}<' in first.text
    audit = _audits(roster_engine, "district.update")[-1].details
    assert audit == {"notices.contacts": 2, "notices.webhook_host": "sis.d1.example.org"}  # no address

    later = as_d1_admin.get(SETTINGS)
    assert row.webhook_secret not in later.text
    assert "Registrar@d1.example.org" in later.text
    again = as_d1_admin.post(f"{SETTINGS}/notices", data={"csrf_token": page_csrf(SETTINGS), **form})
    assert again.status_code == 303  # the webhook keeps its secret
    assert (_notices(roster_engine) or row).webhook_secret == row.webhook_secret

    rotated = as_d1_admin.post(f"{SETTINGS}/notices/secret", data={"csrf_token": page_csrf(SETTINGS)})
    assert rotated.status_code == 200
    new_secret = (_notices(roster_engine) or row).webhook_secret
    assert new_secret
    assert new_secret != row.webhook_secret
    assert f'id="webhook-secret">{new_secret}<' in rotated.text
    assert len(_audits(roster_engine, "district.webhook_secret_rotate")) == 1

    cleared = as_d1_admin.post(
        f"{SETTINGS}/notices", data={"csrf_token": page_csrf(SETTINGS), "contacts": "", "webhook_url": ""}
    )
    assert cleared.status_code == 303
    row = _notices(roster_engine)
    assert row is not None
    assert (row.contacts, row.webhook_url, row.webhook_secret) == ([], None, None)


def test_notice_settings_refused_by_the_field_keep_what_was_typed(
    as_d1_admin: TestClient, roster_engine: sa.Engine, page_csrf: Callable[[str], str]
) -> None:
    refused = as_d1_admin.post(
        f"{SETTINGS}/notices",
        data={
            "csrf_token": page_csrf(SETTINGS),
            "contacts": "it-team@d1.example.org\nnot-an-address",
            "webhook_url": "ftp://sis.d1.example.org",
        },
    )
    assert refused.status_code == 422
    assert '<p class="field-error" id="contacts-error">Contacts, entry 2: must be an email' in refused.text
    assert '<p class="field-error" id="webhook_url-error">Webhook URL: must be an http(s) URL' in refused.text
    assert 'aria-describedby="contacts-error"' in refused.text
    assert "not-an-address</textarea>" in refused.text
    assert _notices(roster_engine) is None
    assert _audits(roster_engine, "district.update") == []


def test_notice_forms_need_csrf_and_stay_in_their_district(
    as_d1_admin: TestClient, roster_engine: sa.Engine, page_csrf: Callable[[str], str]
) -> None:
    form = {"contacts": "it-team@d1.example.org", "webhook_url": ""}
    assert as_d1_admin.post(f"{SETTINGS}/notices", data=form).status_code == 403
    assert as_d1_admin.post(f"{SETTINGS}/notices", data={"csrf_token": "forged", **form}).status_code == 403
    token = page_csrf(SETTINGS)
    other = as_d1_admin.post("/console/d/d2/settings/notices", data={"csrf_token": token, **form})
    assert other.status_code == 404
    assert (
        as_d1_admin.post("/console/d/d2/settings/notices/secret", data={"csrf_token": token}).status_code
        == 404
    )
    with Session(roster_engine) as session:
        assert session.exec(select(NoticeSetting)).all() == []
