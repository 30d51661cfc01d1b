from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StringConstraints

from roster_api.notices.schemas import NoticeSettingsIn, NoticeSettingsPublic, NoticeSettingsUpdate
from roster_shared.contracts import CLEVER_ID_PATTERN, Product

SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
# a v1 CSV, or a package (OneRoster zip, or the clever.zip that Clever's loose SFTP files are packed into)
FILE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,59}\.(csv|zip)$"
TIME_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("must be an IANA time zone such as America/Chicago") from exc
    if value not in available_timezones() and value != "UTC":
        raise ValueError("must be an IANA time zone such as America/Chicago")
    return value


CleverDistrictId = Annotated[str, StringConstraints(pattern=CLEVER_ID_PATTERN)]
TimeZoneName = Annotated[str, AfterValidator(_timezone)]
RowPolicy = Literal["reject", "skip"]


class LicenseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seats: int = Field(ge=0, le=10_000_000)
    enforce_seats: StrictBool = False


class LicensePublic(LicenseIn):
    pass


class SyncSettings(BaseModel):
    """Defaults (docs/design.md, "Applying a roster"): hold above 10 % deactivated or 75 % updated of any
    entity type."""

    model_config = ConfigDict(extra="forbid")

    hold_deactivate_pct: float = Field(default=10.0, ge=0, le=100)
    hold_update_pct: float = Field(default=75.0, ge=0, le=100)
    hold_expire_days: int = Field(
        default=14, ge=1, le=365, description="A held import not decided within this many days expires"
    )
    nightly_file_name: str = Field(default="roster.csv", pattern=FILE_NAME_PATTERN)
    nightly_time: str = Field(default="02:00", pattern=TIME_PATTERN, description="Local time, HH:MM")
    import_on_upload: StrictBool = True
    timezone: TimeZoneName = "America/New_York"
    on_row_errors: RowPolicy = Field(
        default="reject",
        description="reject: a file with row errors is rejected; skip: those rows are left out",
    )


class SyncSettingsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hold_deactivate_pct: float | None = Field(default=None, ge=0, le=100)
    hold_update_pct: float | None = Field(default=None, ge=0, le=100)
    hold_expire_days: int | None = Field(default=None, ge=1, le=365)
    nightly_file_name: str | None = Field(default=None, pattern=FILE_NAME_PATTERN)
    nightly_time: str | None = Field(default=None, pattern=TIME_PATTERN)
    import_on_upload: StrictBool | None = None
    timezone: TimeZoneName | None = None
    on_row_errors: RowPolicy | None = None


class DistrictCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=SLUG_PATTERN, description="Slug, e.g. springfield-usd")
    name: str = Field(min_length=1, max_length=200)
    clever_district_id: CleverDistrictId | None = None
    licenses: dict[Product, LicenseIn] = Field(default_factory=dict)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    notices: NoticeSettingsIn = Field(default_factory=NoticeSettingsIn)


class DistrictUpdate(BaseModel):
    """Only the fields given change. In `licenses`, a product set to null is unlicensed."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    clever_district_id: CleverDistrictId | None = None
    licenses: dict[Product, LicenseIn | None] | None = None
    sync: SyncSettingsUpdate | None = None
    notices: NoticeSettingsUpdate | None = None


class DistrictPublic(BaseModel):
    id: str
    name: str
    clever_district_id: str | None
    licenses: dict[Product, LicensePublic]
    sync: SyncSettings
    notices: NoticeSettingsPublic
    created_at: datetime
    updated_at: datetime
