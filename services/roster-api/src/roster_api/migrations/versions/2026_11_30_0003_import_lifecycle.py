"""import lifecycle: superseded holds (import_run.superseded_by), progress of a running import
(import_run.progress), and the days a hold waits before it expires (district.hold_expire_days)

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-30 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0003"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("import_run", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("superseded_by", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True)
        )
        batch_op.add_column(sa.Column("progress", sa.JSON(), nullable=True))
    with op.batch_alter_table("district", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("hold_expire_days", sa.Integer(), nullable=False, server_default=sa.text("14"))
        )


def downgrade() -> None:
    with op.batch_alter_table("district", schema=None) as batch_op:
        batch_op.drop_column("hold_expire_days")
    with op.batch_alter_table("import_run", schema=None) as batch_op:
        batch_op.drop_column("progress")
        batch_op.drop_column("superseded_by")
