"""The console at 170,000 students: person name-prefix indexes on PostgreSQL (lower(first_name),
lower(last_name) with text_pattern_ops), so a name search reads only the matches, and district_figures,
the overview's kept counts (roster.figures), and login_attempt's (district_id, outcome, created_at) index
with `reason` added, so the overview's failures of the week by reason are read from the index alone

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 01:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import roster_api.models

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME_COLUMNS = ("first_name", "last_name")


def upgrade() -> None:
    op.create_table(
        "district_figures",
        sa.Column("district_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column(
            "counted_at",
            roster_api.models.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["district_id"], ["district.id"], name=op.f("fk_district_figures_district_id_district")
        ),
        sa.PrimaryKeyConstraint("district_id", name=op.f("pk_district_figures")),
    )
    with op.batch_alter_table("login_attempt", schema=None) as batch_op:
        batch_op.create_index(
            "ix_login_attempt_district_id_outcome_created_at_reason",
            ["district_id", "outcome", "created_at", "reason"],
            unique=False,
        )
        batch_op.drop_index("ix_login_attempt_district_id_outcome_created_at")
    # SQLite: no name-prefix indexes (see models._name_prefix_index)
    if op.get_bind().dialect.name != "postgresql":
        return
    for column in NAME_COLUMNS:
        op.create_index(
            f"ix_person_district_id_role_lower_{column}",
            "person",
            ["district_id", "role", sa.text(f"lower({column}) text_pattern_ops")],
            unique=False,
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for column in NAME_COLUMNS:
            op.drop_index(f"ix_person_district_id_role_lower_{column}", table_name="person")
    with op.batch_alter_table("login_attempt", schema=None) as batch_op:
        batch_op.create_index(
            "ix_login_attempt_district_id_outcome_created_at",
            ["district_id", "outcome", "created_at"],
            unique=False,
        )
        batch_op.drop_index("ix_login_attempt_district_id_outcome_created_at_reason")
    op.drop_table("district_figures")
