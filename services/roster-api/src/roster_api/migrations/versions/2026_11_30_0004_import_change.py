"""import_change: the listed changes of a dry run, hold or applied import

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-30 22:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0004"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "import_change",
        sa.Column("district_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("import_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("entity", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
        sa.Column("line", sa.Integer(), nullable=True),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("district_id", "import_id", "seq", name=op.f("pk_import_change")),
    )


def downgrade() -> None:
    op.drop_table("import_change")
