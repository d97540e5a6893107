"""Scheduled clean-up: finished entries are kept OUTBOX_KEEP_DONE_HOURS, then deleted."""

from __future__ import annotations

from datetime import timedelta

import structlog
from fastapi import Request

from app.core.outbox.repository import OutboxRepository
from app.core.queue import TaskiqDepends, broker

log = structlog.get_logger("app.outbox")


@broker.task(task_name="core.outbox.purge", schedule=[{"cron": "41 * * * *"}])
async def purge_outbox(request: Request = TaskiqDepends()) -> int:
    settings = request.app.state.settings
    async with request.app.state.database.sessionmaker() as session:
        purged = await OutboxRepository().purge_done(
            session, older_than=timedelta(hours=settings.outbox_keep_done_hours)
        )
        await session.commit()
    log.info("outbox_purged", entries=purged)
    return purged
