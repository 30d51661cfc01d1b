"""row policy: district.on_row_errors ("reject" a file with row errors, or "skip" those rows)

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 23:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("district", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "on_row_errors",
                sqlmodel.sql.sqltypes.AutoString(length=8),
                nullable=False,
                server_default="reject",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("district", schema=None) as batch_op:
        batch_op.drop_column("on_row_errors")
