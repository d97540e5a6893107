"""transactional outbox: entries, and a notification to the relays on every insert

Revision ID: 6f2d8a4c1e57
Revises: 3e9a1c5d7b20
Create Date: 2026-12-02 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "6f2d8a4c1e57"
down_revision: str | None = "3e9a1c5d7b20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outbox_entries",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("task_name", sa.String(length=200), nullable=False),
        sa.Column("args", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("kwargs", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("labels", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.String(length=10), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "available_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'queued', 'done', 'dead')",
            name=op.f("ck_outbox_entries_status_is_known"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_entries")),
    )
    op.create_index(
        "ix_outbox_entries_due",
        "outbox_entries",
        ["available_at", "id"],
        unique=False,
        postgresql_where="status = 'pending'",
    )
    op.create_index(
        "ix_outbox_entries_queued",
        "outbox_entries",
        ["queued_at"],
        unique=False,
        postgresql_where="status = 'queued'",
    )
    op.create_index(
        "ix_outbox_entries_finished",
        "outbox_entries",
        ["finished_at"],
        unique=False,
        postgresql_where="status = 'done'",
    )
    # One notification per inserting statement, delivered when its transaction commits.
    op.execute(
        """
        CREATE FUNCTION outbox_entries_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('outbox', '');
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER outbox_entries_notify AFTER INSERT ON outbox_entries
        FOR EACH STATEMENT EXECUTE FUNCTION outbox_entries_notify()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER outbox_entries_notify ON outbox_entries")
    op.execute("DROP FUNCTION outbox_entries_notify()")
    op.drop_index("ix_outbox_entries_finished", table_name="outbox_entries")
    op.drop_index("ix_outbox_entries_queued", table_name="outbox_entries")
    op.drop_index("ix_outbox_entries_due", table_name="outbox_entries")
    op.drop_table("outbox_entries")
