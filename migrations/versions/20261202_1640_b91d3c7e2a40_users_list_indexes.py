"""users: indexes for the list's sorts and filters (keyset pages stay fast on large tables)

Revision ID: b91d3c7e2a40
Revises: d7a3f0c61e85
Create Date: 2026-12-02 16:00:00.000000

On a large live table, create them with CREATE INDEX CONCURRENTLY by hand first (this
revision runs in the upgrade's transaction, which holds the migrations lock, and would block
writes to users while each index builds).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b91d3c7e2a40"
down_revision: str | None = "d7a3f0c61e85"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {
    "ix_users_created_at_live": ["created_at", "id"],
    "ix_users_updated_at_live": ["updated_at", "id"],
    "ix_users_email_live": ["email", "id"],
    "ix_users_role_live": ["role", "id"],
    "ix_users_role_created_at_live": ["role", "created_at", "id"],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(
            name,
            "users",
            columns,
            postgresql_where=sa.text("deleted_at IS NULL"),
            if_not_exists=True,
        )


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="users", if_exists=True)
