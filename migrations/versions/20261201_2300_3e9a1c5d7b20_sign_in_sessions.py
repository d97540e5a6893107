"""sign-in sessions in core; refresh tokens belong to one

Revision ID: 3e9a1c5d7b20
Revises: 8b3f2c71d4e9
Create Date: 2026-12-01 23:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3e9a1c5d7b20"
down_revision: str | None = "8b3f2c71d4e9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sign_in_sessions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("idle_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sign_in_sessions")),
    )
    op.create_index(
        op.f("ix_sign_in_sessions_user_id"), "sign_in_sessions", ["user_id"], unique=False
    )
    # Each refresh-token family was a sign-in session: live while its head token was.
    op.execute(
        """
        INSERT INTO sign_in_sessions (id, user_id, created_at, expires_at, idle_expires_at, ended_at)
        SELECT family_id, min(user_id::text)::uuid, min(created_at), max(expires_at),
               max(expires_at),
               CASE WHEN bool_or(revoked_at IS NULL AND rotated_at IS NULL) THEN NULL
                    ELSE now() END
        FROM auth_refresh_tokens GROUP BY family_id
        """
    )
    op.drop_index("ix_auth_refresh_tokens_live_family", table_name="auth_refresh_tokens")
    op.drop_index(op.f("ix_auth_refresh_tokens_family_id"), table_name="auth_refresh_tokens")
    op.alter_column("auth_refresh_tokens", "family_id", new_column_name="session_id")
    op.create_index(
        op.f("ix_auth_refresh_tokens_session_id"),
        "auth_refresh_tokens",
        ["session_id"],
        unique=False,
    )
    op.create_foreign_key(
        op.f("fk_auth_refresh_tokens_session_id_sign_in_sessions"),
        "auth_refresh_tokens",
        "sign_in_sessions",
        ["session_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.drop_column("auth_refresh_tokens", "revoked_at")


def downgrade() -> None:
    op.add_column(
        "auth_refresh_tokens",
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.execute(
        """
        UPDATE auth_refresh_tokens AS t SET revoked_at = s.ended_at
        FROM sign_in_sessions AS s WHERE s.id = t.session_id AND s.ended_at IS NOT NULL
        """
    )
    op.drop_constraint(
        op.f("fk_auth_refresh_tokens_session_id_sign_in_sessions"),
        "auth_refresh_tokens",
        type_="foreignkey",
    )
    op.drop_index(op.f("ix_auth_refresh_tokens_session_id"), table_name="auth_refresh_tokens")
    op.alter_column("auth_refresh_tokens", "session_id", new_column_name="family_id")
    op.create_index(
        op.f("ix_auth_refresh_tokens_family_id"), "auth_refresh_tokens", ["family_id"], unique=False
    )
    op.create_index(
        "ix_auth_refresh_tokens_live_family",
        "auth_refresh_tokens",
        ["family_id"],
        unique=False,
        postgresql_where=sa.text("revoked_at IS NULL AND rotated_at IS NULL"),
    )
    op.drop_index(op.f("ix_sign_in_sessions_user_id"), table_name="sign_in_sessions")
    op.drop_table("sign_in_sessions")
