"""apikey: on PostgreSQL, a change to a key's validity is announced (NOTIFY api_key_changed)

Every roster-api process listens and drops its cache of verified keys, so a revoked key stops working
everywhere within a second. `last_used_at` writes are not announced. SQLite has no notifications: there
each request checks its key in the database.

Revision ID: 0007
Revises: 0001
Create Date: 2026-11-30 22:05:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHANNEL = "api_key_changed"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        CREATE FUNCTION notify_api_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', '');
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER api_key_changed
        AFTER UPDATE OF key_hash, scopes, district_id, revoked_at OR DELETE OR TRUNCATE ON apikey
        FOR EACH STATEMENT EXECUTE FUNCTION notify_api_key_changed()
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS api_key_changed ON apikey")
    op.execute("DROP FUNCTION IF EXISTS notify_api_key_changed()")
