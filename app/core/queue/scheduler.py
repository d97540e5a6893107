"""Periodic tasks: declared with a `schedule` label on the task, sent by one scheduler process.

    @broker.task(schedule=[{"cron": "*/5 * * * *"}])       # every five minutes (UTC)
    @broker.task(schedule=[{"interval": 30}])              # every 30 seconds

Run exactly one `app scheduler` per deployment; `app worker` processes execute what it sends.
"""

from __future__ import annotations

from datetime import UTC, datetime

from taskiq import TaskiqScheduler
from taskiq.cli.scheduler.run import is_cron_task_now, is_interval_task_now, is_time_task_now
from taskiq.schedule_sources import LabelScheduleSource
from taskiq.scheduler.scheduled_task import ScheduledTask

from app.core.queue.broker import broker

scheduler = TaskiqScheduler(broker=broker, sources=[LabelScheduleSource(broker)])


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
