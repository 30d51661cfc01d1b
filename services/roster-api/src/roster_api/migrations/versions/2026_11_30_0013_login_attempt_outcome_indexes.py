"""login_attempt indexes led by (district_id, outcome): the console overview's recent failures by reason
and its people-who-logged-in counts per product and role

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 23:45:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("login_attempt", schema=None) as batch_op:
        batch_op.create_index(
            "ix_login_attempt_district_id_outcome_created_at",
            ["district_id", "outcome", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_login_attempt_district_id_outcome_product_role_person",
            ["district_id", "outcome", "product", "clever_role", "person_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("login_attempt", schema=None) as batch_op:
        batch_op.drop_index("ix_login_attempt_district_id_outcome_product_role_person")
        batch_op.drop_index("ix_login_attempt_district_id_outcome_created_at")
