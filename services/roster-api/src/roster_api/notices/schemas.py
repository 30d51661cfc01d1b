"""Request and response models of a district's notice settings and of the delivery log."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

MAX_CONTACTS = 20
# Deliberately plain: one address per entry, no display name, nothing a mail header could be split on.
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)


def _contact(value: str) -> str:
    value = value.strip()
    if len(value) > 254 or not _EMAIL.fullmatch(value):
        raise ValueError("must be an email address such as it-team@district.org")
    local, _, domain = value.rpartition("@")
    return f"{local}@{domain.lower()}"


def _contacts(values: list[str]) -> list[str]:
    unique: list[str] = []
    for value in values:
        if value.lower() not in {u.lower() for u in unique}:
            unique.append(value)
    return unique


def _webhook_url(value: str) -> str:
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("must be an http(s) URL such as https://sis.district.org/roster-events")
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ValueError("must not contain spaces or control characters")
    _ = parts.port  # raises ValueError for a port out of range
    if parts.username or parts.password:
        raise ValueError("must not carry a user or password; deliveries are signed instead")
    if parts.fragment:
        raise ValueError("must not have a #fragment")
    return value


Contact = Annotated[str, AfterValidator(_contact)]
Contacts = Annotated[list[Contact], Field(max_length=MAX_CONTACTS), AfterValidator(_contacts)]
WebhookUrl = Annotated[str, Field(max_length=2000), AfterValidator(_webhook_url)]


class NoticeSettingsIn(BaseModel):
    """Who hears of import outcomes that need a person: rejected, held, superseded, expired, failed,
    applied with warnings, and a nightly sync that found no file or failed."""

    model_config = ConfigDict(extra="forbid")

    contacts: Contacts = Field(default_factory=list, description="Email addresses of district staff")
    webhook_url: WebhookUrl | None = Field(
        default=None, description="Receives a signed JSON POST per notice; https outside development"
    )


class NoticeSettingsUpdate(BaseModel):
    """Only the fields given change; `webhook_url: null` removes the webhook and its secret."""

    model_config = ConfigDict(extra="forbid")

    contacts: Contacts | None = None
    webhook_url: WebhookUrl | None = None


class NoticeSettingsPublic(BaseModel):
    contacts: list[str] = Field(default_factory=list)
    webhook_url: str | None = None
    webhook_secret_set: bool = False
    webhook_secret_rotated_at: datetime | None = None
    webhook_secret: str | None = Field(
        default=None,
        description="Only in the answer that generated it (webhook set for the first time, or rotated): "
        "keep it to verify signatures; it is never shown again",
    )


class WebhookSecretPublic(BaseModel):
    webhook_secret: str = Field(description="Shown once: keep it to verify the X-Roster-Signature header")
    rotated_at: datetime


class NoticeAttemptPublic(BaseModel):
    reference: str
    event: str
    channel: str = Field(description="email | webhook")
    target: str = Field(description="The email domain or the webhook's host")
    attempt: int
    outcome: str = Field(description="delivered | retrying | undelivered")
    code: int | None = Field(description="HTTP status or SMTP reply code, when the other side answered")
    detail: str | None
    created_at: datetime
