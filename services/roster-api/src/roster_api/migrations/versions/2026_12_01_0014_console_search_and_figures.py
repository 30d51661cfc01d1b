"""The console at 170,000 students: person name indexes on PostgreSQL (lower(last_name), lower(first_name),
id and lower(first_name), byte-wise: COLLATE "C"), so a name search reads about one page of rows;
district_figures, the overview's kept counts (roster.figures); and login_attempt's (district_id, outcome,
created_at) index with `reason` added, so the overview's failures of the week by reason are read from the
index alone

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

# models.PERSON_NAME_INDEXES
NAME_INDEXES = {
    "ix_person_district_id_role_lower_last_first_id": [
        "district_id",
        "role",
        sa.text('lower(last_name) COLLATE "C"'),
        sa.text('lower(first_name) COLLATE "C"'),
        "id",
    ],
    "ix_person_district_id_role_lower_first_name": [
        "district_id",
        "role",
        sa.text('lower(first_name) COLLATE "C"'),
    ],
}


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
    # SQLite: no name indexes (see models._name_index)
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, columns in NAME_INDEXES.items():
        op.create_index(name, "person", columns, unique=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in NAME_INDEXES:
            op.drop_index(name, table_name="person")
    with op.batch_alter_table("login_attempt", schema=None) as batch_op:
        batch_op.create_index(
            "ix_login_attempt_district_id_outcome_created_at",
            ["district_id", "outcome", "created_at"],
            unique=False,
        )
        batch_op.drop_index("ix_login_attempt_district_id_outcome_created_at_reason")
    op.drop_table("district_figures")
