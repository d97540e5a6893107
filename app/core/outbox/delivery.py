"""The worker's side of the outbox: the outcome of each attempt is written back to its entry,
and tasks that must act once per entry (mail) claim it before they act."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

import structlog
from fastapi import Request
from sqlalchemy.exc import SQLAlchemyError
from taskiq import Context, NoResultError, TaskiqMessage, TaskiqMiddleware, TaskiqResult

from app.core import metrics
from app.core.db import Database
from app.core.outbox.repository import OutboxRepository
from app.core.queue import TaskiqDepends, broker
from app.core.queue.middleware import OUTBOX_ATTEMPT_LABEL, OUTBOX_ENTRY_LABEL, backoff_delay

log = structlog.get_logger("app.outbox")


@dataclass(frozen=True)
class OutboxDelivery:
    """Which entry, and which attempt of it, a message was sent for."""

    entry_id: int
    attempt: int

    @classmethod
    def of(cls, message: TaskiqMessage) -> OutboxDelivery | None:
        """None for a task sent with `.kiq()` rather than by the outbox."""
        entry = message.labels.get(OUTBOX_ENTRY_LABEL)
        if entry is None:
            return None
        return cls(entry_id=int(entry), attempt=int(message.labels.get(OUTBOX_ATTEMPT_LABEL, 1)))


def _error_text(error: BaseException | None) -> str:
    return f"{type(error).__name__}: {error}" if error is not None else "failed"


class OutboxMiddleware(TaskiqMiddleware):
    """Writes each attempt's outcome to its entry: done; pending again after a backoff
    (QUEUE_RETRY_DELAY doubling, capped at a minute); or dead once the task's retry budget
    (QUEUE_MAX_RETRIES, or the task's `max_retries` label counted as taskiq counts it) is
    spent, or at once for a task labelled `retry_on_error=False`. A retry waits in the
    database, not in a worker's memory: a worker that stops meanwhile loses nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.database: Database | None = None
        self.max_retries = 3
        self.base_delay = 5.0
        self.entries = OutboxRepository()

    def configure(self, *, max_retries: int, base_delay: float) -> None:
        self.max_retries = max_retries
        self.base_delay = base_delay

    def bind(self, database: Database | None) -> None:
        """The database the entries live in (the running app's)."""
        self.database = database

    def _labels(self, task_name: str, labels: dict[str, Any]) -> dict[str, Any]:
        task = self.broker.find_task(task_name)
        return {**(task.labels if task is not None else {}), **labels}

    def _attempts(self, labels: dict[str, Any]) -> int:
        if str(labels.get("retry_on_error", True)).lower() == "false":
            return 1
        return int(labels.get("max_retries", self.max_retries + 1))

    def attempts_allowed(self, task_name: str, labels: dict[str, Any]) -> int:
        """How many times an entry of this task may run: QUEUE_MAX_RETRIES + 1, the task's
        `max_retries` label (taskiq counts attempts with it), or 1 for `retry_on_error=False`."""
        return self._attempts(self._labels(task_name, labels))

    def retry_in(self, message: TaskiqMessage, attempt: int) -> timedelta | None:
        """How long until the next attempt after failed attempt `attempt`; None: no more."""
        labels = self._labels(message.task_name, message.labels)
        if attempt >= self._attempts(labels):
            return None
        delay = float(labels.get("delay", self.base_delay))
        return timedelta(seconds=backoff_delay(delay, attempt))

    async def post_execute(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
        delivery = OutboxDelivery.of(message)
        if delivery is None or isinstance(result.error, NoResultError):
            return  # not the outbox's, or a duplicate delivery that stood aside
        if self.database is None:
            log.error("outbox_outcome_lost", entry=delivery.entry_id, reason="no database bound")
            return
        retry_in = self.retry_in(message, delivery.attempt) if result.is_err else None
        try:
            async with self.database.sessionmaker() as session:
                if result.is_err:
                    await self.entries.fail(
                        session,
                        id=delivery.entry_id,
                        attempt=delivery.attempt,
                        error=_error_text(result.error),
                        retry_in=retry_in,
                    )
                else:
                    await self.entries.succeed(
                        session, id=delivery.entry_id, attempt=delivery.attempt
                    )
                await session.commit()
        except (SQLAlchemyError, OSError) as error:
            # The entry stays queued; a relay sends it again after OUTBOX_REQUEUE_AFTER.
            log.warning("outbox_outcome_lost", entry=delivery.entry_id, error=repr(error))
            return
        if result.is_err and retry_in is not None:
            metrics.TASKS_RETRIED.labels(task=message.task_name).inc()
        if result.is_err and retry_in is None:
            log.error(
                "outbox_entry_dead",
                entry=delivery.entry_id,
                task_name=message.task_name,
                attempts=delivery.attempt,
                error=_error_text(result.error),
            )


outbox_middleware = OutboxMiddleware()
broker.add_middlewares(outbox_middleware)


async def claim_delivery(
    context: Context = TaskiqDepends(), request: Request = TaskiqDepends()
) -> OutboxDelivery | None:
    """For a task whose effect must happen once per entry (a mail must not arrive twice): take
    this delivery's attempt before acting. A second delivery of the same attempt (a relay or
    the queue sent it again) finds it taken or finished and is skipped without running.

    A claim lapses after half of QUEUE_REDELIVERY_TIMEOUT, so the queue's redelivery of a task
    whose worker died can take it over."""
    delivery = OutboxDelivery.of(context.message)
    if delivery is None:
        return None
    database: Database = request.app.state.database
    lease = timedelta(seconds=request.app.state.settings.queue_redelivery_timeout / 2)
    async with database.sessionmaker() as session:
        claimed = await OutboxRepository().claim(
            session, id=delivery.entry_id, attempt=delivery.attempt, lease=lease
        )
        await session.commit()
    if not claimed:
        log.info("outbox_duplicate_skipped", entry=delivery.entry_id, attempt=delivery.attempt)
        raise NoResultError
    return delivery


# A task parameter, `once: RunOnce = None`: the task acts at most once per attempt of an entry.
RunOnce = Annotated[OutboxDelivery | None, TaskiqDepends(claim_delivery)]
