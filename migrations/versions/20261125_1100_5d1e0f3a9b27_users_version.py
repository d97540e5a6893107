"""users: optimistic locking version column

Revision ID: 5d1e0f3a9b27
Revises: c52458ecf731
Create Date: 2026-11-25 11:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5d1e0f3a9b27"
down_revision: str | None = "c52458ecf731"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "users", sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False)
    )


def downgrade() -> None:
    op.drop_column("users", "version")
