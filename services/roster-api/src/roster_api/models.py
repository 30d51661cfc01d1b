"""Table models. Every roster table starts its keys and indexes with `district_id`, so the data can be
partitioned or distributed by district later without a redesign (docs/design.md, "Running it")."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on the way out on both databases (SQLite stores naive values)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def ts(*, nullable: bool = False, index: bool = False) -> Any:
    if nullable:
        return Field(default=None, sa_type=UTCDateTime, nullable=True, index=index)
    # The server default serves bulk writes (an import's COPY leaves these columns to the database,
    # which then need not parse two timestamps per row); everything else sets them in Python.
    return Field(
        default_factory=utcnow,
        sa_type=UTCDateTime,
        nullable=False,
        index=index,
        sa_column_kwargs={"server_default": sa.text("CURRENT_TIMESTAMP")},
    )


def json_col() -> Any:
    return Field(default_factory=dict, sa_type=sa.JSON, nullable=False)


# --- tenants, licenses, credentials -------------------------------------------------------------


class District(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    clever_district_id: str | None = Field(default=None, max_length=24, unique=True)
    hold_deactivate_pct: float = 10.0
    hold_update_pct: float = 75.0
    hold_expire_days: int = 14
    nightly_file_name: str = Field(default="roster.csv", max_length=64)
    nightly_time: str = Field(default="02:00", max_length=5)
    import_on_upload: bool = True
    timezone: str = Field(default="America/New_York", max_length=64)
    # the district console admits the district's Clever `staff` users too, not only `district_admin`
    console_staff: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    # a file's rows with errors: "reject" the file, or "skip" them (and keep what they name as stored)
    on_row_errors: str = Field(default="reject", max_length=8, sa_column_kwargs={"server_default": "reject"})
    created_at: datetime = ts()
    updated_at: datetime = ts()


class License(SQLModel, table=True):
    district_id: str = Field(primary_key=True, foreign_key="district.id", max_length=64)
    product: str = Field(primary_key=True, max_length=32)
    seats: int
    enforce_seats: bool = False


class DistrictFigures(SQLModel, table=True):
    """A district's counts that read its whole roster and login history (seats used, people rostered,
    people who have logged in; see roster.figures): counted after each applied import, by the worker
    for a district that has none, and after an overview that found them missing or older than a few
    minutes, so the console's overview reads one row."""

    __tablename__ = "district_figures"

    district_id: str = Field(primary_key=True, foreign_key="district.id", max_length=64)
    counts: dict[str, Any] = json_col()
    counted_at: datetime = ts()


class ApiKey(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=100)
    key_hash: str = Field(max_length=64, unique=True)
    scopes: list[str] = Field(default_factory=list, sa_type=sa.JSON, nullable=False)
    district_id: str | None = Field(default=None, foreign_key="district.id", max_length=64, index=True)
    created_at: datetime = ts()
    last_used_at: datetime | None = ts(nullable=True)
    revoked_at: datetime | None = ts(nullable=True)


class SftpCredential(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=32)
    district_id: str = Field(foreign_key="district.id", max_length=64, index=True)
    username: str = Field(max_length=64, unique=True)
    password_hash: str | None = Field(default=None, max_length=255)
    public_keys: list[str] = Field(default_factory=list, sa_type=sa.JSON, nullable=False)
    created_at: datetime = ts()
    rotated_at: datetime | None = ts(nullable=True)
    revoked_at: datetime | None = ts(nullable=True)


# --- roster ------------------------------------------------------------------------------------


class School(SQLModel, table=True):
    district_id: str = Field(primary_key=True, max_length=64)
    school_id: str = Field(primary_key=True, max_length=255)
    name: str = Field(max_length=255)
    active: bool = True
    created_at: datetime = ts()
    updated_at: datetime = ts()
    deactivated_at: datetime | None = ts(nullable=True)


class Person(SQLModel, table=True):
    """A rostered teacher or student. Keyed by Clever ID when the roster has one, else by email."""

    __table_args__ = (
        sa.Index("uq_person_district_id_clever_id", "district_id", "clever_id", unique=True),
        sa.Index("ix_person_district_id_email", "district_id", "email"),
        sa.Index("ix_person_district_id_role_last_name", "district_id", "role", "last_name"),
        sa.Index("ix_person_district_id_role_sis_id", "district_id", "role", "sis_id"),
    )

    district_id: str = Field(primary_key=True, max_length=64)
    id: str = Field(primary_key=True, max_length=32)
    role: str = Field(max_length=16)  # "student" | "teacher"
    clever_id: str | None = Field(default=None, max_length=24)
    # "roster" when the CSV gave it, "login" when bound on first email-fallback login
    clever_id_source: str | None = Field(default=None, max_length=16)
    # the district's own id for the person (OneRoster sourcedId, Clever's Student_id/Teacher_id)
    sis_id: str | None = Field(default=None, max_length=255)
    email: str | None = Field(default=None, max_length=320)
    first_name: str = Field(default="", max_length=255)
    last_name: str = Field(default="", max_length=255)
    grade: str | None = Field(default=None, max_length=32)
    active: bool = True
    created_at: datetime = ts()
    updated_at: datetime = ts()
    deactivated_at: datetime | None = ts(nullable=True)


class bytewise_lower(FunctionElement[str]):
    """`lower(x)` compared byte by byte: `lower(x) COLLATE "C"` on PostgreSQL, plain `lower(x)` on
    SQLite (which compares bytes anyway). Name search filters and sorts on it, so one PostgreSQL index
    both finds a name prefix (`LIKE 'abc%'` is a range under the C collation, whatever the database's
    own) and returns the matches in page order, reading only as many as the page shows."""

    type = sa.String()
    inherit_cache = True


@compiles(bytewise_lower)
def _lower(element: bytewise_lower, compiler: Any, **kw: Any) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(bytewise_lower, "postgresql")
def _lower_c(element: bytewise_lower, compiler: Any, **kw: Any) -> str:
    return f'lower({compiler.process(element.clauses, **kw)}) COLLATE "C"'


def _name_index(name: str, *columns: str) -> sa.Index:
    """PostgreSQL only: SQLite would not use them for LIKE, and cannot reflect expression indexes, so
    its batch migrations would drop them (migrations/env.py leaves them out of SQLite's comparison).

    A name column is indexed as `lower(name) COLLATE "C"`, i.e. bytewise_lower. The collation goes in
    through postgresql_ops (rendered after the expression, where CREATE INDEX takes it), because
    PostgreSQL reports an index's collation apart from its expression: so declared, Alembic compares the
    expression `lower(name)` with what the database reports."""
    table = Person.__table__  # type: ignore[attr-defined]
    elements: list[Any] = []
    ops: dict[str, str] = {}
    for column in columns:
        if column.endswith("_name"):
            elements.append(sa.func.lower(table.c[column]).label(f"lower_{column}"))
            ops[f"lower_{column}"] = 'COLLATE "C"'
        else:
            elements.append(table.c[column])
    return sa.Index(name, *elements, postgresql_ops=ops).ddl_if(dialect="postgresql")


PERSON_NAME_INDEXES = (
    # a last-name prefix, and the search's page order: (last, first, id)
    _name_index(
        "ix_person_district_id_role_lower_last_first_id",
        *("district_id", "role", "last_name", "first_name", "id"),
    ),
    # a first-name prefix that few people have
    _name_index("ix_person_district_id_role_lower_first_name", "district_id", "role", "first_name"),
)


class Section(SQLModel, table=True):
    """A class (`class` is a keyword)."""

    district_id: str = Field(primary_key=True, max_length=64)
    class_id: str = Field(primary_key=True, max_length=255)
    school_id: str = Field(max_length=255)
    name: str = Field(max_length=255)
    active: bool = True
    created_at: datetime = ts()
    updated_at: datetime = ts()
    deactivated_at: datetime | None = ts(nullable=True)


class SectionTeacher(SQLModel, table=True):
    __tablename__ = "section_teacher"
    # a teacher's classes and schools (resolve, roster reads) without scanning the district's classes
    __table_args__ = (sa.Index("ix_section_teacher_district_id_person_id", "district_id", "person_id"),)

    district_id: str = Field(primary_key=True, max_length=64)
    class_id: str = Field(primary_key=True, max_length=255)
    person_id: str = Field(primary_key=True, max_length=32)
    active: bool = True


class Enrollment(SQLModel, table=True):
    __table_args__ = (sa.Index("ix_enrollment_district_id_person_id", "district_id", "person_id"),)

    district_id: str = Field(primary_key=True, max_length=64)
    class_id: str = Field(primary_key=True, max_length=255)
    person_id: str = Field(primary_key=True, max_length=32)
    active: bool = True


class Account(SQLModel, table=True):
    """One per (person, licensed product); `account_id` is the stable opaque id products see. It is
    random (96 bits), so unique in practice everywhere; the index leads with district_id like all others."""

    __table_args__ = (
        sa.Index("uq_account_district_id_account_id", "district_id", "account_id", unique=True),
    )

    district_id: str = Field(primary_key=True, max_length=64)
    person_id: str = Field(primary_key=True, max_length=32)
    product: str = Field(primary_key=True, max_length=32)
    account_id: str = Field(max_length=32)
    active: bool = True
    created_at: datetime = ts()
    updated_at: datetime = ts()


# --- imports and jobs ---------------------------------------------------------------------------


class ImportRun(SQLModel, table=True):
    __tablename__ = "import_run"
    __table_args__ = (
        sa.Index("ix_import_run_district_id_created_at", "district_id", "created_at"),
        sa.Index("ix_import_run_status_created_at", "status", "created_at"),
    )

    id: str = Field(primary_key=True, max_length=32)
    district_id: str = Field(max_length=64)
    status: str = Field(max_length=16)
    source: str = Field(max_length=16)  # "api" | "sftp" | "nightly"
    dry_run: bool = False
    filename: str | None = Field(default=None, max_length=255)
    sha256: str | None = Field(default=None, max_length=64)
    size_bytes: int = 0
    upload_path: str | None = Field(default=None, max_length=512)
    report: dict[str, Any] = json_col()
    error_count: int = 0
    warning_count: int = 0
    attempts: int = 0
    lease_until: datetime | None = ts(nullable=True)
    failure: str | None = Field(default=None, max_length=2000)
    created_by: str | None = Field(default=None, max_length=100)
    decided_by: str | None = Field(default=None, max_length=100)
    created_at: datetime = ts()
    started_at: datetime | None = ts(nullable=True)
    finished_at: datetime | None = ts(nullable=True)
    # a held import that a newer import of the district replaced (status "superseded")
    superseded_by: str | None = Field(default=None, max_length=32)
    # while running: phase, rows_read, bytes_read, total_bytes, percent (written about twice a second)
    progress: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON, nullable=True)


class NightlyRun(SQLModel, table=True):
    """One row per district and local date: the nightly sync runs once, whatever the number of schedulers."""

    __tablename__ = "nightly_run"

    district_id: str = Field(primary_key=True, max_length=64)
    run_date: str = Field(primary_key=True, max_length=10)
    import_id: str | None = Field(default=None, max_length=32)
    outcome: str = Field(default="started", max_length=16)
    created_at: datetime = ts()


class ImportChange(SQLModel, table=True):
    """One listed change of a dry run, hold or applied import (roster_api.importing.changes): a row
    created, updated (`fields`: [field, old, new] triples), deactivated or reactivated. Written in the
    transaction that records the import's result."""

    __tablename__ = "import_change"

    district_id: str = Field(primary_key=True, max_length=64)
    import_id: str = Field(primary_key=True, max_length=32)
    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    entity: str = Field(max_length=16)
    kind: str = Field(max_length=16)
    key: str = Field(max_length=1024)
    name: str = Field(max_length=1024)
    line: int | None = None
    fields: list[Any] = Field(default_factory=list, sa_type=sa.JSON, nullable=False)


# --- diagnostics and audit ----------------------------------------------------------------------


class LoginAttempt(SQLModel, table=True):
    __tablename__ = "login_attempt"
    __table_args__ = (
        sa.Index("ix_login_attempt_district_id_created_at", "district_id", "created_at"),
        # support's "why can't this student log in" starts from the Clever user id
        sa.Index("ix_login_attempt_district_id_clever_user_id", "district_id", "clever_user_id"),
        # the console overview: recent failures by reason (from the index alone), and people who logged in
        # per product and role
        sa.Index(
            "ix_login_attempt_district_id_outcome_created_at_reason",
            "district_id",
            "outcome",
            "created_at",
            "reason",
        ),
        sa.Index(
            "ix_login_attempt_district_id_outcome_product_role_person",
            "district_id",
            "outcome",
            "product",
            "clever_role",
            "person_id",
        ),
    )

    reference: str = Field(primary_key=True, max_length=16)
    created_at: datetime = ts()
    product: str = Field(max_length=32)
    district_id: str | None = Field(default=None, max_length=64)
    clever_district_id: str = Field(max_length=24)
    clever_user_id: str = Field(max_length=24)
    clever_role: str = Field(max_length=32)
    # keyed hash of the email Clever sent: lets support match it without keeping it in clear
    email_digest: str | None = Field(default=None, max_length=64)
    outcome: str = Field(max_length=16)  # "success" | "failure"
    reason: str | None = Field(default=None, max_length=32)
    matched_by: str | None = Field(default=None, max_length=16)
    account_id: str | None = Field(default=None, max_length=32)
    person_id: str | None = Field(default=None, max_length=32)
    # login diagnostics: the API key that asked, the rule that decided, a sentence for support, and
    # what the roster held for that Clever ID / email at that moment (ids and flags only, no names)
    caller: str | None = Field(default=None, max_length=100)
    rule: str | None = Field(default=None, max_length=32)
    diagnosis: str | None = Field(default=None, max_length=1000)
    roster: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON, nullable=True)


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = ts(index=True)
    actor: str = Field(max_length=100)
    action: str = Field(max_length=64)
    district_id: str | None = Field(default=None, max_length=64, index=True)
    target: str | None = Field(default=None, max_length=255)
    details: dict[str, Any] = json_col()


class Disposal(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=32)
    district_id: str = Field(max_length=64)
    created_at: datetime = ts()
    actor: str = Field(max_length=100)
    counts: dict[str, Any] = json_col()


# --- result notices -----------------------------------------------------------------------------


class NoticeSetting(SQLModel, table=True):
    """Who hears of a district's import outcomes: contact emails and an optional signed webhook.

    The webhook secret is kept as given (it signs every delivery, so it cannot be a one-way hash) and is
    returned only by the request that generated it."""

    __tablename__ = "notice_setting"

    district_id: str = Field(primary_key=True, foreign_key="district.id", max_length=64)
    contacts: list[str] = Field(default_factory=list, sa_type=sa.JSON, nullable=False)
    webhook_url: str | None = Field(default=None, max_length=2000)
    webhook_secret: str | None = Field(default=None, max_length=128)
    secret_rotated_at: datetime | None = ts(nullable=True)
    updated_at: datetime = ts()


class NoticeDelivery(SQLModel, table=True):
    """One row per attempt to deliver a notice: the delivery log of an import (or of a nightly run that
    had no import). `target` is an email domain or a URL host, never an address, path or query."""

    __tablename__ = "notice_delivery"
    __table_args__ = (sa.Index("ix_notice_delivery_district_id_reference", "district_id", "reference"),)

    id: int | None = Field(default=None, primary_key=True)
    district_id: str = Field(max_length=64)
    import_id: str | None = Field(default=None, max_length=32)
    # the import id, or "nightly-<district>-<local date>" for a nightly run without an import
    reference: str = Field(max_length=120)
    event: str = Field(max_length=32)  # the outcome notified: held, rejected, nightly.no_file, ...
    channel: str = Field(max_length=16)  # email | webhook
    target: str = Field(max_length=255)
    attempt: int
    # delivered | retrying (failed, tried again later) | undelivered (failed for good)
    outcome: str = Field(max_length=16)
    # the HTTP status or SMTP reply code, when the other side answered
    code: int | None = None
    detail: str | None = Field(default=None, max_length=200)
    created_at: datetime = ts()
