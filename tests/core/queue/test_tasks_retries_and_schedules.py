from __future__ import annotations

import asyncio
import os
import socket
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import time_machine
from fastapi import FastAPI, Request
from httpx import AsyncClient
from redis.asyncio import Redis
from taskiq import Context, TaskiqDepends

from app.core.cache import CacheService, get_cache
from app.core.mail import MailService
from app.core.queue import REQUEST_ID_LABEL, AppBroker, broker, send_due_tasks
from app.core.queue.scheduler import scheduler
from app.core.request_context import current_request_id
from tests.conftest import MailOutbox, Services, make_settings
from tests.support import PROJECT_ROOT

seen: list[dict[str, Any]] = []
failures: dict[str, int] = {}


@broker.task(task_name="tests.queue.record")
async def record(
    value: int,
    cache: CacheService = TaskiqDepends(get_cache),
    context: Context = TaskiqDepends(),
) -> None:
    await cache.set(f"recorded:{value}", value)
    seen.append(
        {
            "value": value,
            "request_id": current_request_id(),
            "label": context.message.labels.get(REQUEST_ID_LABEL),
        }
    )


@broker.task(task_name="tests.queue.flaky")
async def flaky(key: str, fail_times: int) -> None:
    failures[key] = failures.get(key, 0) + 1
    if failures[key] <= fail_times:
        raise RuntimeError("transient failure")


@broker.task(task_name="tests.queue.tick", schedule=[{"cron": "*/5 * * * *"}])
async def tick() -> None:
    seen.append({"value": "tick"})


async def test_task_runs_in_memory_with_fastapi_dependencies(app: FastAPI) -> None:
    seen.clear()
    await record.kiq(1)
    await broker.wait_all()
    assert seen[-1]["value"] == 1
    assert await app.state.cache.get("recorded:1") == 1


async def test_request_id_travels_with_the_task(app: FastAPI, client: AsyncClient) -> None:
    seen.clear()

    async def enqueue(request: Request) -> dict[str, str]:
        await record.kiq(2)
        return {}

    app.router.add_api_route("/_test/enqueue", enqueue, methods=["POST"])
    response = await client.post("/_test/enqueue", headers={"X-Request-ID": "req-12345678"})
    await broker.wait_all()
    assert response.headers["x-request-id"] == "req-12345678"
    assert seen == [{"value": 2, "request_id": "req-12345678", "label": "req-12345678"}]


async def test_failing_task_is_retried_then_succeeds(app: FastAPI) -> None:
    await flaky.kiq("a", fail_times=2)
    await broker.wait_all()
    assert failures["a"] == 3  # two failures, then success


async def test_retries_stop_at_the_limit(app: FastAPI) -> None:
    await flaky.kiq("b", fail_times=100)
    await broker.wait_all()
    assert failures["b"] == app.state.settings.queue_max_retries + 1


async def test_scheduled_task_fires_on_its_cron_minute(app: FastAPI) -> None:
    seen.clear()
    with time_machine.travel(datetime(2030, 1, 1, 12, 3, tzinfo=UTC), tick=False):
        assert "tests.queue.tick" not in await send_due_tasks(scheduler)
    with time_machine.travel(datetime(2030, 1, 1, 12, 5, tzinfo=UTC), tick=False):
        assert "tests.queue.tick" in await send_due_tasks(scheduler)
    await broker.wait_all()
    assert {"value": "tick"} in seen


@pytest.mark.parametrize(("ttl", "stored"), [(0, False), (60, True)])
async def test_task_results_are_stored_in_redis_only_when_asked(
    services: Services, redis: Redis, ttl: int, stored: bool
) -> None:
    """QUEUE_RESULT_TTL=0 (the default): a finished task's result is not written anywhere."""
    from taskiq.result import TaskiqResult

    fresh = AppBroker()
    fresh.configure(make_settings(services, queue_broker="redis", queue_result_ttl=ttl))
    result: TaskiqResult[Any] = TaskiqResult(is_err=False, return_value=42, execution_time=0.1)
    await fresh.result_backend.set_result("probe-task", result)
    try:
        keys = [key async for key in redis.scan_iter("*task-result*probe-task")]
        assert len(keys) == int(stored)
        if stored:
            assert (await fresh.result_backend.get_result("probe-task")).return_value == 42
            assert 0 < await redis.ttl(keys[0]) <= ttl
    finally:
        await fresh.result_backend.shutdown()


# A real `app worker` process: `make e2e`.
@pytest.mark.e2e
async def test_real_worker_delivers_queued_mail_over_redis(
    services: Services, redis: Redis, mail_outbox: MailOutbox, app: FastAPI
) -> None:
    """`app worker` on the real Redis stream: the queued mail reaches the SMTP catcher."""
    from taskiq_redis import RedisStreamBroker

    env = {
        **os.environ,
        "APP_ENV": "test",
        "DATABASE_URL": services.database_url,
        "REDIS_URL": services.redis_url,
        "QUEUE_BROKER": "redis",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(services.smtp_port),
        "LOG_LEVEL": "WARNING",
        "METRICS_WORKER_PORT": str(metrics_port := free_port()),
    }
    settings = app.state.settings
    producer = RedisStreamBroker(url=services.redis_url, queue_name=f"{settings.app_name}:tasks")
    mailer: MailService = app.state.mailer
    message = mailer.build(to="worker@example.com", subject="From the worker", text="hi")
    await producer.startup()
    worker = await asyncio.create_subprocess_exec(
        str(PROJECT_ROOT / ".venv/bin/app"),
        "worker",
        cwd=PROJECT_ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        kicker = send_mail_kicker(producer)
        await kicker.kiq(message.as_string())
        received = await mail_outbox.wait(within=20)
        assert received["Subject"] == "From the worker"
        # The worker's metrics server reports what its (spawned) worker process ran.
        assert await _worker_counted(metrics_port, "core.mail.send")
    finally:
        worker.terminate()
        await asyncio.wait_for(worker.wait(), 10)
        await producer.shutdown()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _worker_counted(port: int, task: str, *, within: float = 10.0) -> bool:
    """Whether the worker's metrics server counts `task` as succeeded (polled: the count
    follows the task's end)."""
    url = f"http://127.0.0.1:{port}/metrics"
    wanted = f'queue_tasks_succeeded_total{{task="{task}"}} 1.0'
    deadline = asyncio.get_running_loop().time() + within
    async with httpx.AsyncClient() as client:
        while asyncio.get_running_loop().time() < deadline:
            try:
                if wanted in (await client.get(url)).text:
                    return True
            except httpx.TransportError:
                pass  # not listening yet
            await asyncio.sleep(0.1)
    return False


def send_mail_kicker(producer: Any) -> Any:
    from taskiq.kicker import AsyncKicker

    return AsyncKicker(task_name="core.mail.send", broker=producer, labels={})
