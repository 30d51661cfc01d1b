"""The one error envelope both services answer with, and the stable codes clients branch on."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class ErrorCode(StrEnum):
    # generic
    VALIDATION_ERROR = "VALIDATION_ERROR"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    CONFLICT = "CONFLICT"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    RATE_LIMITED = "RATE_LIMITED"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    # districts, keys, licenses
    DISTRICT_NOT_FOUND = "DISTRICT_NOT_FOUND"
    DISTRICT_EXISTS = "DISTRICT_EXISTS"
    CLEVER_DISTRICT_TAKEN = "CLEVER_DISTRICT_TAKEN"
    CONFIRMATION_REQUIRED = "CONFIRMATION_REQUIRED"
    # roster
    SCHOOL_NOT_FOUND = "SCHOOL_NOT_FOUND"
    TEACHER_NOT_FOUND = "TEACHER_NOT_FOUND"
    CLASS_NOT_FOUND = "CLASS_NOT_FOUND"
    STUDENT_NOT_FOUND = "STUDENT_NOT_FOUND"
    # imports
    IMPORT_NOT_FOUND = "IMPORT_NOT_FOUND"
    IMPORT_NOT_HELD = "IMPORT_NOT_HELD"
    IMPORT_SUPERSEDED = "IMPORT_SUPERSEDED"
    IMPORT_EXPIRED = "IMPORT_EXPIRED"
    INVALID_ROSTER = "INVALID_ROSTER"
    # diagnostics, SFTP
    LOGIN_ATTEMPT_NOT_FOUND = "LOGIN_ATTEMPT_NOT_FOUND"
    SFTP_CREDENTIAL_NOT_FOUND = "SFTP_CREDENTIAL_NOT_FOUND"
    # resolve failures (one per ResolveReason, upper-cased)
    NO_ACCOUNT = "NO_ACCOUNT"
    INACTIVE_ACCOUNT = "INACTIVE_ACCOUNT"
    PRODUCT_NOT_LICENSED = "PRODUCT_NOT_LICENSED"
    DISTRICT_NOT_LINKED = "DISTRICT_NOT_LINKED"
    AMBIGUOUS_EMAIL = "AMBIGUOUS_EMAIL"
    AMBIGUOUS_SIS_ID = "AMBIGUOUS_SIS_ID"
    ROLE_MISMATCH = "ROLE_MISMATCH"
    CLEVER_ID_CONFLICT = "CLEVER_ID_CONFLICT"


class ErrorBody(BaseModel):
    code: ErrorCode
    message: str
    details: list[dict[str, Any]] = Field(default_factory=list)


class ErrorEnvelope(BaseModel):
    """`{"error": {"code", "message", "details"}}`: every non-2xx answer of both services."""

    error: ErrorBody


def envelope(code: ErrorCode, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"error": {"code": str(code), "message": message, "details": details or []}}


class ApiError(Exception):
    """Root of the errors a service raises; the handler turns it into the envelope.

    Services subclass it (one root per service) and never raise HTTPException.
    """

    status_code: int = 400
    code: ErrorCode = ErrorCode.VALIDATION_ERROR

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | None = None,
        status_code: int | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code
        self.details = details or []

    def to_envelope(self) -> dict[str, Any]:
        return envelope(self.code, self.message, self.details)
