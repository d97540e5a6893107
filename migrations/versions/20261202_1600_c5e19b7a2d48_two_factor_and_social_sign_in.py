"""auth: TOTP secrets, recovery codes and social sign-in identities

Revision ID: c5e19b7a2d48
Revises: 81e66ea487a6
Create Date: 2026-12-02 16:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c5e19b7a2d48"
down_revision: str | None = "81e66ea487a6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "auth_two_factor",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("secret", sa.String(length=64), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_step", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_auth_two_factor_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_auth_two_factor")),
    )
    op.create_table(
        "auth_recovery_codes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_auth_recovery_codes_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_recovery_codes")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_auth_recovery_codes_code_hash")),
    )
    op.create_index(
        op.f("ix_auth_recovery_codes_user_id"), "auth_recovery_codes", ["user_id"], unique=False
    )
    op.create_table(
        "auth_social_identities",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.String(length=50), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_auth_social_identities_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_social_identities")),
        sa.UniqueConstraint(
            "provider", "subject", name=op.f("uq_auth_social_identities_provider_subject")
        ),
    )
    op.create_index(
        op.f("ix_auth_social_identities_user_id"),
        "auth_social_identities",
        ["user_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_auth_social_identities_user_id"), table_name="auth_social_identities")
    op.drop_table("auth_social_identities")
    op.drop_index(op.f("ix_auth_recovery_codes_user_id"), table_name="auth_recovery_codes")
    op.drop_table("auth_recovery_codes")
    op.drop_table("auth_two_factor")
