"""The audit log of administrative actions: who (API key name), what, when."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from roster_api.models import AuditEvent


def record(
    *,
    session: Session,
    actor: str,
    action: str,
    district_id: str | None = None,
    target: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Adds the event to the caller's transaction, so it commits or rolls back with the change itself."""
    session.add(
        AuditEvent(actor=actor, action=action, district_id=district_id, target=target, details=details or {})
    )
