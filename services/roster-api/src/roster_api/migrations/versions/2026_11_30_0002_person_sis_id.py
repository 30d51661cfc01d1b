"""person.sis_id: the district's own id for a person

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 21:55:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("person", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sis_id", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True))
        batch_op.create_index(
            "ix_person_district_id_role_sis_id", ["district_id", "role", "sis_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("person", schema=None) as batch_op:
        batch_op.drop_index("ix_person_district_id_role_sis_id")
        batch_op.drop_column("sis_id")
