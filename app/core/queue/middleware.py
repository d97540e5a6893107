"""taskiq middlewares: the request id travels with a task, and failing tasks are retried."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import structlog
from taskiq import NoResultError, TaskiqMessage, TaskiqMiddleware, TaskiqResult
from taskiq.kicker import AsyncKicker
from taskiq.middlewares.smart_retry_middleware import SmartRetryMiddleware

from app.core import metrics
from app.core.request_context import REQUEST_ID_LABEL, current_request_id, set_request_id

MAX_RETRY_DELAY = 60.0
# The outbox entry (and its attempt) a message was sent for, when the outbox sent it.
OUTBOX_ENTRY_LABEL = "outbox_entry"
OUTBOX_ATTEMPT_LABEL = "outbox_attempt"

log = structlog.get_logger("app.queue")


def backoff_delay(base: float, retries: int) -> float:
    """Seconds before retry number `retries` (1, 2 ...): base, 2*base, 4*base ... capped at
    MAX_RETRY_DELAY, plus up to a quarter of jitter so a burst of failures spreads out."""
    delay = min(base * 2.0 ** (retries - 1), MAX_RETRY_DELAY)
    if delay:
        delay += random.uniform(0, delay / 4)  # noqa: S311 - jitter, not crypto
    return delay


class RequestIdMiddleware(TaskiqMiddleware):
    """Carries the id of the request that queued a task in its labels, and binds it (with the
    task's name and id) into every log line the task writes."""

    def pre_send(self, message: TaskiqMessage) -> TaskiqMessage:
        request_id = current_request_id()
        if request_id is not None and REQUEST_ID_LABEL not in message.labels:
            message.labels[REQUEST_ID_LABEL] = request_id
        return message

    def pre_execute(self, message: TaskiqMessage) -> TaskiqMessage:
        # Each task runs in its own asyncio task (its own context copy): no reset needed.
        request_id = message.labels.get(REQUEST_ID_LABEL)
        set_request_id(str(request_id) if request_id else None)
        structlog.contextvars.bind_contextvars(task=message.task_name, task_id=message.task_id)
        return message

    def on_error(
        self, message: TaskiqMessage, result: TaskiqResult[Any], exception: BaseException
    ) -> None:
        if isinstance(exception, NoResultError):
            return  # the task chose not to run (a duplicate delivery): not a failure
        log.warning(
            "task_failed",
            error=type(exception).__name__,
            detail=str(exception),
            attempt=int(message.labels.get("_retries", 0)) + 1,
        )


class TaskMetricsMiddleware(TaskiqMiddleware):
    """Counts tasks sent, started, succeeded and failed, and times each run, by task name."""

    def __init__(self) -> None:
        super().__init__()
        self._started: dict[str, float] = {}

    def post_send(self, message: TaskiqMessage) -> None:
        metrics.TASKS_ENQUEUED.labels(task=message.task_name).inc()

    def pre_execute(self, message: TaskiqMessage) -> TaskiqMessage:
        metrics.TASKS_STARTED.labels(task=message.task_name).inc()
        self._started[message.task_id] = time.perf_counter()
        return message

    def on_error(
        self, message: TaskiqMessage, result: TaskiqResult[Any], exception: BaseException
    ) -> None:
        # Here, not in post_execute: a retry replaces the result's error with NoResultError.
        if not isinstance(exception, NoResultError):  # NoResultError: a duplicate stood aside
            metrics.TASKS_FAILED.labels(task=message.task_name).inc()

    def post_execute(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
        started = self._started.pop(message.task_id, None)
        if started is not None:  # timed here: the result's execution_time is rounded to 10 ms
            elapsed = time.perf_counter() - started
            metrics.TASK_DURATION.labels(task=message.task_name).observe(elapsed)
        if not result.is_err:
            metrics.TASKS_SUCCEEDED.labels(task=message.task_name).inc()


class RetryMiddleware(SmartRetryMiddleware):
    """Retries every failing task (opt out with the label `retry_on_error=False`), with
    exponential backoff and jitter: delay, 2*delay, 4*delay ... capped at 60 s.

    The retry is re-queued by the process that ran the task once the delay has passed.
    """

    def __init__(self) -> None:
        super().__init__(default_retry_label=True, use_jitter=True)
        self.pending: set[asyncio.Task[None]] = set()

    def configure(self, *, max_retries: int, base_delay: float) -> None:
        # SmartRetryMiddleware counts attempts, our setting counts retries.
        self.default_retry_count = max_retries + 1
        self.default_delay = base_delay

    def is_retry_on_error(self, message: TaskiqMessage) -> bool:
        # A task sent by the outbox is retried by the outbox (durably), not from memory.
        return OUTBOX_ENTRY_LABEL not in message.labels and super().is_retry_on_error(message)

    def make_delay(self, message: TaskiqMessage, retries: int) -> float:
        return backoff_delay(float(message.labels.get("delay", self.default_delay)), retries)

    async def on_send(
        self, kicker: AsyncKicker[Any, Any], message: TaskiqMessage, delay: float
    ) -> None:
        metrics.TASKS_RETRIED.labels(task=message.task_name).inc()

        async def resend() -> None:
            await asyncio.sleep(delay)
            await kicker.kiq(*message.args, **message.kwargs)

        task = asyncio.create_task(resend())
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)
