"""The outbox's backlog on `/metrics`: entries by status, counted when Prometheus scrapes."""

from __future__ import annotations

from sqlalchemy import func, select

from app.core import metrics
from app.core.db import Database
from app.core.outbox.models import OutboxEntry, OutboxStatus

BACKLOG_STATUSES = (OutboxStatus.PENDING, OutboxStatus.QUEUED, OutboxStatus.DEAD)


async def read_backlog(database: Database) -> None:
    """One grouped count over the statuses that stay small (done entries are not counted)."""
    query = (
        select(OutboxEntry.status, func.count().label("total"))
        .where(OutboxEntry.status.in_([status.value for status in BACKLOG_STATUSES]))
        .group_by(OutboxEntry.status)
    )
    async with database.engine.connect() as connection:
        counts: dict[str, int] = {row.status: row.total for row in await connection.execute(query)}
    for status in BACKLOG_STATUSES:
        metrics.OUTBOX_ENTRIES.labels(status=status.value).set(counts.get(status.value, 0))


metrics.scrape_hooks.append(read_backlog)
