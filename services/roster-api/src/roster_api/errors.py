"""roster-api's exception root. Services raise these; the shared handler renders the envelope."""

from __future__ import annotations

from typing import Any

from roster_shared.errors import ApiError, ErrorCode, ErrorEnvelope


class RosterError(ApiError):
    pass


class NotFound(RosterError):
    status_code = 404
    code = ErrorCode.NOT_FOUND


class Conflict(RosterError):
    status_code = 409
    code = ErrorCode.CONFLICT


class Invalid(RosterError):
    status_code = 422
    code = ErrorCode.VALIDATION_ERROR

    def __init__(self, message: str, *, field: str | None = None, code: ErrorCode | None = None) -> None:
        details: list[dict[str, Any]] = [{"field": field, "message": message}] if field else []
        super().__init__(message, code=code, details=details)


class Unauthenticated(RosterError):
    status_code = 401
    code = ErrorCode.UNAUTHENTICATED


class Forbidden(RosterError):
    status_code = 403
    code = ErrorCode.FORBIDDEN


class PayloadTooLarge(RosterError):
    status_code = 413
    code = ErrorCode.PAYLOAD_TOO_LARGE


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each listed status documented with the error envelope."""
    return {status: {"model": ErrorEnvelope} for status in (401, 403, 422, *statuses)}


def district_not_found(district_id: str) -> NotFound:
    return NotFound(f"District {district_id!r} was not found.", code=ErrorCode.DISTRICT_NOT_FOUND)
