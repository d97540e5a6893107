"""taskiq middlewares: the request id travels with a task, and failing tasks are retried."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import structlog
from taskiq import TaskiqMessage, TaskiqMiddleware, TaskiqResult
from taskiq.kicker import AsyncKicker
from taskiq.middlewares.smart_retry_middleware import SmartRetryMiddleware

from app.core.request_context import current_request_id, set_request_id

REQUEST_ID_LABEL = "request_id"
MAX_RETRY_DELAY = 60.0

log = structlog.get_logger("app.queue")


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
        log.warning(
            "task_failed",
            error=type(exception).__name__,
            detail=str(exception),
            attempt=int(message.labels.get("_retries", 0)) + 1,
        )


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

    def make_delay(self, message: TaskiqMessage, retries: int) -> float:
        base = float(message.labels.get("delay", self.default_delay))
        delay: float = min(base * 2 ** (retries - 1), MAX_RETRY_DELAY)
        if self.use_jitter and delay:
            delay += random.uniform(0, delay / 4)  # noqa: S311 - jitter, not crypto
        return delay

    async def on_send(
        self, kicker: AsyncKicker[Any, Any], message: TaskiqMessage, delay: float
    ) -> None:
        async def resend() -> None:
            await asyncio.sleep(delay)
            await kicker.kiq(*message.args, **message.kwargs)

        task = asyncio.create_task(resend())
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)
