"""person name-prefix indexes on PostgreSQL (lower(first_name), lower(last_name) with text_pattern_ops):
the console's and the API's name search read only the matches instead of a district's whole roster

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 01:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("first_name", "last_name")


def upgrade() -> None:
    # SQLite: not created (see models._name_prefix_index)
    if op.get_bind().dialect.name != "postgresql":
        return
    for column in COLUMNS:
        op.create_index(
            f"ix_person_district_id_role_lower_{column}",
            "person",
            ["district_id", "role", sa.text(f"lower({column}) text_pattern_ops")],
            unique=False,
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for column in COLUMNS:
        op.drop_index(f"ix_person_district_id_role_lower_{column}", table_name="person")
