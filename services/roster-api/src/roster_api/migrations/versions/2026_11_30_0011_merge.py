"""merge the schema branches of 2026-11-30 (sis_id, import lifecycle, import changes, notices, API key
revocation notify, console staff) into one head

Revision ID: 0011
Revises: 0002, 0003, 0004, 0005, 0007, 0008
Create Date: 2026-11-30 23:35:00
"""

from collections.abc import Sequence

revision: str = "0011"
down_revision: str | Sequence[str] | None = ("0002", "0003", "0004", "0005", "0007", "0008")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
