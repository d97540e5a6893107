"""The outbox table: work a use case queued, written in the use case's own transaction."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Identity, Index, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db.base import Base

# Notified by a trigger on every insert (migration): relays wake at once instead of polling.
NOTIFY_CHANNEL = "outbox"


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"  # waiting for a relay (from `available_at`)
    QUEUED = "queued"  # handed to the queue, its outcome not known yet
    DONE = "done"  # the task succeeded (purged after OUTBOX_KEEP_DONE_HOURS)
    DEAD = "dead"  # failed every attempt of its budget: `app outbox` lists, retries, discards


class OutboxEntry(Base):
    __tablename__ = "outbox_entries"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'queued', 'done', 'dead')", name="status_is_known"),
        # What a relay looks for: due pending entries in order, and queued ones gone stale.
        Index(
            "ix_outbox_entries_due",
            "available_at",
            "id",
            postgresql_where="status = 'pending'",
        ),
        Index("ix_outbox_entries_queued", "queued_at", postgresql_where="status = 'queued'"),
        Index("ix_outbox_entries_finished", "finished_at", postgresql_where="status = 'done'"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    task_name: Mapped[str] = mapped_column(String(200))
    args: Mapped[list[Any]] = mapped_column(JSONB, default=list)
    kwargs: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    labels: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    status: Mapped[str] = mapped_column(
        String(10), default=OutboxStatus.PENDING.value, server_default=OutboxStatus.PENDING.value
    )
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    available_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set by the delivery that runs a run-once task (mail): a second delivery finds it taken.
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
