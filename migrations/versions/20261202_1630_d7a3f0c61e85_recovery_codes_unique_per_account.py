"""Recovery codes unique per account, not across every account

Revision ID: d7a3f0c61e85
Revises: b5e8d3a1c942
Create Date: 2026-12-02 16:20:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "d7a3f0c61e85"
down_revision: str | None = "b5e8d3a1c942"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Two accounts may draw the same code: only the same account's codes must differ.
    op.drop_constraint(
        op.f("uq_auth_recovery_codes_code_hash"), "auth_recovery_codes", type_="unique"
    )
    op.create_unique_constraint(
        op.f("uq_auth_recovery_codes_user_id_code_hash"),
        "auth_recovery_codes",
        ["user_id", "code_hash"],
    )


def downgrade() -> None:
    op.drop_constraint(
        op.f("uq_auth_recovery_codes_user_id_code_hash"), "auth_recovery_codes", type_="unique"
    )
    op.create_unique_constraint(
        op.f("uq_auth_recovery_codes_code_hash"), "auth_recovery_codes", ["code_hash"]
    )
