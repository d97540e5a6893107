"""auth: action tokens bound to their email; index of live refresh-token families

Revision ID: 8b3f2c71d4e9
Revises: 5d1e0f3a9b27
Create Date: 2026-11-25 11:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8b3f2c71d4e9"
down_revision: str | None = "5d1e0f3a9b27"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Outstanding tokens are bound to the address their user has now (they were mailed to it,
    # unless it changed since: those stop working, which is the point).
    op.add_column("auth_action_tokens", sa.Column("email", sa.String(length=320), nullable=True))
    op.execute(
        "UPDATE auth_action_tokens AS t SET email = u.email FROM users AS u WHERE u.id = t.user_id"
    )
    op.alter_column("auth_action_tokens", "email", nullable=False)
    op.create_index(
        "ix_auth_refresh_tokens_live_family",
        "auth_refresh_tokens",
        ["family_id"],
        unique=False,
        postgresql_where=sa.text("revoked_at IS NULL AND rotated_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_auth_refresh_tokens_live_family",
        table_name="auth_refresh_tokens",
        postgresql_where=sa.text("revoked_at IS NULL AND rotated_at IS NULL"),
    )
    op.drop_column("auth_action_tokens", "email")
