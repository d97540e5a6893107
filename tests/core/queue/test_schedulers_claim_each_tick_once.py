"""Several `app scheduler`s: each tick of a schedule is claimed in Redis by one of them, and
only that one sends it (`ScheduleTicks.pre_send`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis
from taskiq import ScheduledTask
from taskiq.exceptions import ScheduledTaskCancelledError

from app.core.queue import broker
from app.core.queue.scheduler import ScheduleTicks, tick_of
from tests.conftest import Services

NOON = datetime(2026, 12, 2, 12, 0, 0, 4000, tzinfo=UTC)  # a loop wakes just after the second


def _task(**schedule: object) -> ScheduledTask:
    return ScheduledTask(task_name="tests.beat", labels={}, args=[], kwargs={}, **schedule)


def test_every_scheduler_names_a_tick_alike() -> None:
    every_minute = _task(cron="* * * * *")
    assert tick_of(every_minute, NOON)[0] == tick_of(every_minute, NOON + timedelta(seconds=40))[0]
    assert tick_of(every_minute, NOON)[0] != tick_of(every_minute, NOON + timedelta(minutes=1))[0]
    every_second = _task(interval=1)
    early, late = NOON - timedelta(milliseconds=8), NOON + timedelta(milliseconds=300)
    assert tick_of(every_second, early)[0] == tick_of(every_second, late)[0]
    assert tick_of(every_second, NOON)[0] != tick_of(every_second, NOON + timedelta(seconds=1))[0]
    every_half_minute = _task(interval=timedelta(seconds=30))
    assert (
        tick_of(every_half_minute, NOON)[0]
        == tick_of(every_half_minute, NOON + timedelta(seconds=29))[0]
    )
    once = _task(time=NOON)
    assert tick_of(once, NOON)[0] == tick_of(once, NOON + timedelta(hours=1))[0]
    # A claim outlives the tick, so a late scheduler still finds it taken.
    assert tick_of(every_second, NOON)[1] >= timedelta(seconds=2)
    assert tick_of(every_minute, NOON)[1] > timedelta(minutes=1)


@pytest.fixture
async def redis(services: Services) -> AsyncIterator[Redis]:
    client = Redis.from_url(services.redis_url)
    try:
        yield client
    finally:
        keys = await client.keys("tests-ticks:*")
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def test_one_scheduler_of_three_sends_a_tick(redis: Redis) -> None:
    schedulers = [ScheduleTicks(broker, redis) for _ in range(3)]
    for scheduler in schedulers:
        scheduler.prefix = "tests-ticks"
    beat = _task(interval=60)
    sent = 0
    for scheduler in schedulers:
        try:
            await scheduler.pre_send(beat)
        except ScheduledTaskCancelledError:
            continue
        sent += 1
    assert sent == 1
    (key,) = await redis.keys("tests-ticks:tests.beat:*")
    assert 60 < await redis.ttl(key) <= 120  # remembered past the tick, then forgotten


async def test_without_redis_a_scheduler_sends_nothing_rather_than_everything() -> None:
    unreachable = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    scheduler = ScheduleTicks(broker, unreachable)
    with pytest.raises(ScheduledTaskCancelledError):
        await scheduler.pre_send(_task(interval=1))
    await unreachable.aclose()
