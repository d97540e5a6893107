"""users: avatar_key, the stored file of the user's avatar

Revision ID: b5e8d3a1c942
Revises: b4d1e7a2c9f3
Create Date: 2026-12-02 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b5e8d3a1c942"
down_revision: str | None = "b4d1e7a2c9f3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("avatar_key", sa.String(length=200), nullable=True))


def downgrade() -> None:
    op.drop_column("users", "avatar_key")
