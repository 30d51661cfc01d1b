"""result notices: per-district contacts and webhook (notice_setting), the delivery log (notice_delivery)

Revision ID: 0005
Revises: 0001
Create Date: 2026-11-30 22:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import roster_api.models

revision: str = "0005"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notice_setting",
        sa.Column("district_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("contacts", sa.JSON(), nullable=False),
        sa.Column("webhook_url", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
        sa.Column("webhook_secret", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("secret_rotated_at", roster_api.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at",
            roster_api.models.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["district_id"], ["district.id"], name=op.f("fk_notice_setting_district_id_district")
        ),
        sa.PrimaryKeyConstraint("district_id", name=op.f("pk_notice_setting")),
    )
    op.create_table(
        "notice_delivery",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("district_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("import_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("reference", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("event", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("target", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("code", sa.Integer(), nullable=True),
        sa.Column("detail", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column(
            "created_at",
            roster_api.models.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notice_delivery")),
    )
    with op.batch_alter_table("notice_delivery", schema=None) as batch_op:
        batch_op.create_index(
            "ix_notice_delivery_district_id_reference", ["district_id", "reference"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("notice_delivery", schema=None) as batch_op:
        batch_op.drop_index("ix_notice_delivery_district_id_reference")
    op.drop_table("notice_delivery")
    op.drop_table("notice_setting")
