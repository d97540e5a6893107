"""The application's task broker: one module-level object that modules declare tasks on.

`broker` is created at import time (so `@broker.task` works anywhere) but bound to its transport
late, from the settings the app or the worker starts with (`configure_broker`):

- `QUEUE_BROKER=redis`: a taskiq-redis `RedisStreamBroker` (consumer group, acknowledged
  delivery: a task a dying worker held is redelivered), and a `RedisAsyncResultBackend` when
  QUEUE_RESULT_TTL asks for results;
- `QUEUE_BROKER=memory`: tasks run in-process on the event loop, as taskiq's `InMemoryBroker`
  does (tests). `await broker.wait_all()` waits for what was queued.

Tasks get FastAPI-style dependencies (`TaskiqDepends(get_cache)` ...): a worker runs the app's
lifespan at start-up, and the app gives the broker its `Request` (`bind_app`).
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncGenerator
from typing import Any

import structlog
from fastapi import FastAPI, Request
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError
from starlette.requests import HTTPConnection
from taskiq import AckableMessage, AsyncBroker, BrokerMessage, TaskiqEvents, TaskiqState
from taskiq.brokers.inmemory_broker import InmemoryResultBackend
from taskiq.receiver import Receiver
from taskiq.result_backends.dummy import DummyResultBackend
from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

from app.core.config import QueueBroker, Settings, get_settings
from app.core.queue.middleware import RequestIdMiddleware, RetryMiddleware, TaskMetricsMiddleware
from app.core.tracing import TracingMiddleware

log = structlog.get_logger("app.queue")

RECONNECT_DELAY = 1.0  # seconds between a worker's attempts to reach a Redis that is down
# Tasks the in-process queue runs at once: like a small worker, it must not take the whole
# connection pool from the requests it shares the process with.
MEMORY_QUEUE_CONCURRENCY = 4


class ReclaimingStreamBroker(RedisStreamBroker):
    """taskiq-redis's stream broker, also reclaiming abandoned tasks when the stream is idle.

    A task is acknowledged only once it has run, so one whose worker died stays pending in the
    consumer group. taskiq-redis 1.2 claims such tasks (XAUTOCLAIM after `idle_timeout`) only
    right after a read that returned new messages: on a quiet queue a dead worker's task would
    wait for the next unrelated task. This broker tries after every read, timed out or not.
    XAUTOCLAIM is atomic, so two workers never claim the same task at once (no lock needed).
    """

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        async with Redis(connection_pool=self.connection_pool) as redis:
            while True:
                # New messages are handed over before the reclaim runs, so a Redis error in
                # the reclaim cannot strand messages this worker has just read.
                for read in (self._read_new, self._reclaim_abandoned):
                    try:
                        found = await read(redis)
                    except ResponseError as error:
                        if "NOGROUP" not in str(error):
                            raise
                        # Redis restarted without its data: the group is declared again.
                        log.warning("queue_group_recreated", stream=self.queue_name)
                        await self.startup()
                        break
                    except (RedisError, OSError) as error:
                        # Redis is down or restarting: the worker waits for it instead of dying.
                        log.warning("queue_unavailable", error=type(error).__name__)
                        await asyncio.sleep(RECONNECT_DELAY)
                        break
                    for stream, message_id, fields in found:
                        yield self._ackable(stream, message_id, fields)

    async def _read_new(self, redis: Redis) -> list[tuple[Any, Any, Any]]:
        """Messages no worker has read yet, as (stream, id, fields)."""
        offsets: Any = {self.queue_name: ">", **self.additional_streams}
        fetched: Any = await redis.xreadgroup(
            self.consumer_group_name,
            self.consumer_name,
            offsets,
            block=self.block,
            noack=False,
            count=self.count,
        )
        return [
            (stream, message_id, fields)
            for stream, messages in fetched or ()
            for message_id, fields in messages
        ]

    async def _reclaim_abandoned(self, redis: Redis) -> list[tuple[Any, Any, Any]]:
        """Messages a dead worker read and never acknowledged, as (stream, id, fields)."""
        found = []
        for stream in [self.queue_name, *self.additional_streams]:
            _, claimed, *_ = await redis.xautoclaim(
                name=stream,
                groupname=self.consumer_group_name,
                consumername=self.consumer_name,
                min_idle_time=self.idle_timeout,
                count=self.unacknowledged_batch_size,
            )
            for message_id, fields in claimed:
                if fields:  # None: deleted from the stream meanwhile
                    log.warning("task_redelivered", stream=str(stream), id=str(message_id))
                    found.append((stream, message_id, fields))
        return found

    def _ackable(self, stream: Any, message_id: Any, fields: Any) -> AckableMessage:
        return AckableMessage(
            data=fields[b"data"], ack=self._ack_generator(id=message_id, queue_name=stream)
        )


class AppBroker(AsyncBroker):
    """An `AsyncBroker` whose transport (Redis streams or in-process) is chosen by settings."""

    def __init__(self) -> None:
        super().__init__()
        self.retry = RetryMiddleware()
        self.add_middlewares(
            RequestIdMiddleware(), TracingMiddleware(), TaskMetricsMiddleware(), self.retry
        )
        self.settings: Settings | None = None
        self.transport: ReclaimingStreamBroker | None = None
        self._receiver: Receiver | None = None
        self._running: set[asyncio.Task[Any]] = set()
        self._slots = asyncio.Semaphore(MEMORY_QUEUE_CONCURRENCY)
        self._started = False
        self._users = 0  # apps sharing the running broker (tests run several)

    @property
    def mode(self) -> QueueBroker | None:
        return self.settings.queue_broker if self.settings is not None else None

    def configure(self, settings: Settings) -> None:
        """Bind the transport and result backend; called before `startup`."""
        if self._started:
            if settings.queue_broker is not self.mode:
                raise RuntimeError("the broker is already running with another transport")
            return
        self.settings = settings
        self.retry.configure(
            max_retries=settings.queue_max_retries, base_delay=settings.queue_retry_delay
        )
        if settings.queue_broker is QueueBroker.MEMORY:
            self.transport = None
            self.result_backend = InmemoryResultBackend()
            self._receiver = Receiver(broker=self, propagate_exceptions=False)
            self._slots = asyncio.Semaphore(MEMORY_QUEUE_CONCURRENCY)
            return
        if settings.redis_url is None:
            raise RuntimeError("QUEUE_BROKER=redis needs REDIS_URL")
        self._receiver = None
        self.transport = ReclaimingStreamBroker(
            url=settings.redis_url,
            queue_name=f"{settings.app_name}:tasks",
            consumer_group_name=f"{settings.app_name}:workers",
            # A group created after tasks were queued still reads them from the start.
            consumer_id="0",
            xread_block=1000,
            # A task still unacknowledged after this long (its worker died) is claimed again.
            idle_timeout=int(settings.queue_redelivery_timeout * 1000),
        )
        # Results only for those who wait for them: storing one costs each task a Redis
        # client and a SET (docs/performance.md).
        self.result_backend = (
            RedisAsyncResultBackend(
                redis_url=settings.redis_url,
                result_ex_time=settings.queue_result_ttl,
                prefix_str=f"{settings.app_name}:task-result",
            )
            if settings.queue_result_ttl
            else DummyResultBackend()
        )

    async def startup(self) -> None:
        self._users += 1
        if self._started:
            return
        if self.settings is None:
            self.configure(get_settings())
        await super().startup()
        if self.transport is not None:
            await self.transport.startup()
        self._started = True

    async def shutdown(self) -> None:
        self._users = max(self._users - 1, 0)
        if not self._started or self._users:
            return
        self._started = False
        await self.wait_all()
        if self.transport is not None:
            await self.transport.shutdown()
        await super().shutdown()

    async def kick(self, message: BrokerMessage) -> None:
        if self.transport is not None:
            await self.transport.kick(message)
            return
        if self._receiver is None:
            raise RuntimeError("the broker is not configured; is the app started?")
        task = asyncio.create_task(self._run_in_memory(self._receiver, message.message))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run_in_memory(self, receiver: Receiver, message: bytes) -> None:
        async with self._slots:
            await receiver.callback(message=message)

    async def listen(self) -> AsyncGenerator[bytes | AckableMessage, None]:
        if self.transport is None:
            raise RuntimeError("the in-memory broker cannot be listened to; use QUEUE_BROKER=redis")
        async for message in self.transport.listen():
            yield message

    async def wait_all(self) -> None:
        """Wait until every task queued in memory (retries included) has finished."""
        while self._running or self.retry.pending:
            await asyncio.gather(*self._running, *self.retry.pending, return_exceptions=True)


def bind_app(app: FastAPI | None) -> None:
    """Tasks' `Request` (and `HTTPConnection`) dependencies stand for `app`; None unbinds.
    One object in the broker's dependency context (taskiq's `add_dependency_context`), where
    taskiq-fastapi's `populate_dependency_context` installs dependency overrides, with which
    taskiq rebuilds a task's dependency graph every time it runs (docs/performance.md)."""
    if app is None:
        broker.custom_dependency_context.pop(Request, None)
        broker.custom_dependency_context.pop(HTTPConnection, None)
        return
    scope = {"app": app, "type": "http", "state": {}}
    broker.add_dependency_context({Request: Request(scope), HTTPConnection: HTTPConnection(scope)})


async def _start_app(state: TaskiqState) -> None:
    """In a worker process, build the app and run its lifespan: the tasks' dependencies are
    the app's services (its lifespan binds it, see `bind_app`)."""
    if not broker.is_worker_process:
        return
    # By name: app.main imports this module.
    app: FastAPI = importlib.import_module("app.main").create_app()
    state.app_lifespan = app.router.lifespan_context(app)
    await state.app_lifespan.__aenter__()


async def _stop_app(state: TaskiqState) -> None:
    if broker.is_worker_process:
        await state.app_lifespan.__aexit__(None, None, None)


broker = AppBroker()
broker.add_event_handler(TaskiqEvents.WORKER_STARTUP, _start_app)
broker.add_event_handler(TaskiqEvents.WORKER_SHUTDOWN, _stop_app)

__all__ = ["AppBroker", "ReclaimingStreamBroker", "bind_app", "broker"]
