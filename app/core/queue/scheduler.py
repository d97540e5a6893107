"""Periodic tasks: declared with a `schedule` label on the task, sent by `app scheduler`.

    @broker.task(schedule=[{"cron": "*/5 * * * *"}])       # every five minutes (UTC)
    @broker.task(schedule=[{"interval": 30}])              # every 30 seconds

Any number of `app scheduler` processes may run (two, for one to survive the other): there is
no leader. Each one sees every tick, and the first to claim the tick in Redis sends it
(`SET NX` with an expiry, `ScheduleTicks.pre_send`); the others stand aside. A scheduler that
dies costs nothing: at the next tick the others claim it as usual.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from taskiq import ScheduledTask, TaskiqScheduler
from taskiq.cli.scheduler.run import is_cron_task_now, is_interval_task_now, is_time_task_now
from taskiq.exceptions import ScheduledTaskCancelledError
from taskiq.schedule_sources import LabelScheduleSource

from app.core.config import QueueBroker, get_settings
from app.core.queue.broker import AppBroker, broker

log = structlog.get_logger("app.queue")

CRON_TICK_TTL = timedelta(minutes=2)  # a minute's claim outlives any clock skew between hosts


def tick_of(task: ScheduledTask, now: datetime) -> tuple[str, timedelta]:
    """The occurrence of `task` that is due at `now`, as every scheduler names it, and how
    long its claim must be remembered. Schedulers wake on whole seconds (taskiq's loop), so
    `now` is rounded to its second before it is placed in an interval's window."""
    if task.cron is not None:
        return now.strftime("%Y-%m-%dT%H:%M"), CRON_TICK_TTL
    if task.interval is not None:
        interval = task.interval
        seconds = int(interval.total_seconds() if isinstance(interval, timedelta) else interval)
        seconds = max(seconds, 1)
        window = round(now.timestamp()) // seconds
        return f"every-{seconds}s-{window}", timedelta(seconds=max(2 * seconds, 10))
    if task.time is not None:
        return f"at-{task.time.isoformat()}", timedelta(days=1)
    return "never", timedelta(seconds=10)


class ScheduleTicks(LabelScheduleSource):
    """taskiq's label schedules (`schedule=[...]` on a task), each tick sent by one scheduler
    however many run: before it sends, a scheduler claims the tick in Redis."""

    def __init__(self, broker: AppBroker, redis: Redis | None = None) -> None:
        super().__init__(broker)
        self.app_broker = broker
        self.redis = redis
        self.owner = f"{socket.gethostname()}:{os.getpid()}"  # whose claim it is, for humans
        self.prefix = "app:schedule"
        self._owns_redis = False

    async def startup(self) -> None:
        await super().startup()
        if self.redis is not None:
            return
        # Sources start before the broker: the settings are read as the broker will read them.
        settings = self.app_broker.settings or get_settings()
        if settings.queue_broker is QueueBroker.REDIS and settings.redis_url is not None:
            self.redis = Redis.from_url(
                settings.redis_url,
                socket_timeout=settings.redis_timeout,
                socket_connect_timeout=settings.redis_timeout,
            )
            self.prefix = f"{settings.app_name}:schedule"
            self._owns_redis = True

    async def shutdown(self) -> None:
        if self._owns_redis and self.redis is not None:
            await self.redis.aclose()
            self.redis = None
        await super().shutdown()

    async def pre_send(self, task: ScheduledTask) -> None:
        """Claim this tick of `task`, or stand aside (taskiq then does not send it)."""
        if self.redis is None:
            return  # the in-process queue: one app, one sender
        tick, ttl = tick_of(task, datetime.now(tz=UTC))
        key = f"{self.prefix}:{task.task_name}:{tick}"
        try:
            claimed = await self.redis.set(key, self.owner, nx=True, ex=ttl)
        except (RedisError, OSError) as error:
            # Without Redis the queue cannot take the task either: this tick is lost for all.
            log.warning("schedule_tick_unclaimed", task=task.task_name, error=type(error).__name__)
            raise ScheduledTaskCancelledError from error
        if not claimed:
            raise ScheduledTaskCancelledError


schedule_ticks = ScheduleTicks(broker)
scheduler = TaskiqScheduler(broker=broker, sources=[schedule_ticks])


def is_due(task: ScheduledTask, now: datetime, last_run: datetime | None = None) -> bool:
    if task.cron is not None:
        return is_cron_task_now(task.cron, now, offset=task.cron_offset, last_run=last_run)
    if task.interval is not None:
        return is_interval_task_now(task.interval, now, last_run=last_run)
    if task.time is not None:
        return is_time_task_now(task.time, now, last_run=last_run)
    return False


async def send_due_tasks(
    target: TaskiqScheduler = scheduler, *, now: datetime | None = None
) -> list[str]:
    """Send every scheduled task due at `now` (default: the current minute); return their
    names. The scheduler process does this in its loop; tests call it with a frozen clock."""
    now = now or datetime.now(tz=UTC)
    sent: list[str] = []
    for source in target.sources:
        await source.startup()
        for task in await source.get_schedules():
            if is_due(task, now):
                await target.on_ready(source, task)
                sent.append(task.task_name)
    return sent
