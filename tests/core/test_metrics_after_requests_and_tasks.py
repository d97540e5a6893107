"""/metrics: Prometheus's text format, moved by real requests and the tasks they queue."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
import psutil
import pytest
import uvicorn
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from httpx import AsyncClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from redis.exceptions import ConnectionError as RedisConnectionError
from typer.testing import CliRunner

from app.cli import cli
from app.core.errors import RateLimited
from app.core.mail import MailService, MailTemplates
from app.core.metrics import MULTIPROC_ENV, worker_metrics_server
from app.core.queue import broker
from app.core.redis import RedisCircuit
from app.main import create_app
from tests.conftest import MailOutbox, Services, make_settings
from tests.core import metrics_worker_process
from tests.factories.users import DEFAULT_PASSWORD
from tests.support import http_client, queued_work_done

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def _scrape(client: AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_requests_and_the_task_they_queue_move_the_counters(
    app: FastAPI, client: AsyncClient, mail_outbox: MailOutbox
) -> None:
    before = await _scrape(client)
    registered = await client.post(
        "/api/v1/auth/register",
        json={"email": "metrics@example.com", "username": "metrics", "password": DEFAULT_PASSWORD},
    )
    assert registered.status_code == 202
    user_path = "/api/v1/users/00000000-0000-0000-0000-000000000001"
    assert (await client.get(user_path)).status_code == 401
    assert (await client.get("/no/such/page")).status_code == 404
    await mail_outbox.wait()
    await queued_work_done(app)
    after = await _scrape(client)

    def moved(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    register = {"method": "POST", "route": "/api/v1/auth/register"}
    assert moved("http_requests_total", **register, status="2xx") == 1
    assert moved("http_request_duration_seconds_count", **register) == 1
    assert moved("http_request_duration_seconds_bucket", **register, le="+Inf") == 1
    # The route's template, never the raw path (one series per route, not per id).
    by_id = {"method": "GET", "route": "/api/v1/users/{user_id}"}
    assert moved("http_requests_total", **by_id, status="4xx") == 1
    assert not any(user_path in dict(labels).get("route", "") for _, labels in after)
    assert moved("http_requests_total", method="GET", route="<unmatched>", status="4xx") == 1
    # The scrape itself is counted, and was in flight while it was answered.
    assert _value(after, "http_requests_in_flight") >= 1

    # The listener the sign-up queued (through the outbox) sent the verification mail.
    mail = {"task": "listener:app.modules.auth.listeners.mail_verification_link"}
    for counter in ("enqueued", "started", "succeeded"):
        assert moved(f"queue_tasks_{counter}_total", **mail) >= 1, counter
    assert moved("queue_tasks_failed_total", **mail) == 0
    assert moved("queue_task_duration_seconds_count", **mail) >= 1
    assert moved("mail_sent_total") >= 1

    # Read at scrape time: the pool, the outbox's backlog; and the process collectors.
    assert _value(after, "db_pool_size") == app.state.settings.db_pool_size
    assert ("db_pool_checked_out", frozenset()) in after
    for status in ("pending", "queued", "dead"):
        assert ("outbox_entries", frozenset({("status", status)})) in after
    assert ("process_cpu_seconds_total", frozenset()) in after


async def test_metrics_stay_out_of_the_api_schema(client: AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert "/metrics" not in schema["paths"]


async def test_a_metrics_token_is_required_when_one_is_set(services: Services) -> None:
    app = create_app(make_settings(services, metrics_token="scrape-me"))
    async with LifespanManager(app), http_client(app) as client:
        refused = await client.get("/metrics", headers={"Authorization": "Bearer wrong"})
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
        assert (await client.get("/metrics")).status_code == 401
        allowed = await client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert allowed.status_code == 200
        assert "http_requests_total" in allowed.text


@pytest.mark.parametrize("enabled", [False])
async def test_metrics_can_be_turned_off(services: Services, enabled: bool) -> None:
    app = create_app(make_settings(services, metrics_enabled=enabled))
    async with http_client(app) as client:
        assert (await client.get("/metrics")).status_code == 404


# Real worker processes: `make e2e`.
@pytest.mark.e2e
def test_the_worker_metrics_server_adds_up_its_worker_processes() -> None:
    with worker_metrics_server(0, addr="127.0.0.1") as port:
        spawn = multiprocessing.get_context("spawn")  # as `app worker` starts its processes
        children = [spawn.Process(target=metrics_worker_process.run_a_task) for _ in range(2)]
        for child in children:
            child.start()
        for child in children:
            child.join(30)
            assert child.exitcode == 0
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    task = frozenset({("task", "demo.task")})
    assert samples[("queue_tasks_succeeded_total", task)] == 2
    assert samples[("queue_task_duration_seconds_count", task)] == 2
    assert MULTIPROC_ENV not in os.environ  # the temporary directory is gone with the server


# Real worker processes: `make e2e`.
@pytest.mark.e2e
def test_the_worker_metrics_server_reports_its_processes_cpu_and_memory_added_up() -> None:
    spawn = multiprocessing.get_context("spawn")
    with worker_metrics_server(0, addr="127.0.0.1") as port:
        release = spawn.Event()
        ready = [spawn.Event() for _ in range(2)]
        children = [
            spawn.Process(target=metrics_worker_process.work_then_hold, args=(event, release))
            for event in ready
        ]
        for child in children:
            child.start()
        try:
            assert all(event.wait(30) for event in ready)
            processes = [psutil.Process(), *(psutil.Process(child.pid) for child in children)]
            own_cpu = sum(processes[0].cpu_times()[:2])
            reaped = os.times().children_user + os.times().children_system  # earlier children
            text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            memory = sum(process.memory_info().rss for process in processes)
            cpu = sum(sum(process.cpu_times()[:2]) for process in processes)
            own_memory = processes[0].memory_info().rss
            started = processes[0].create_time()
        finally:
            release.set()
            for child in children:
                child.join(30)
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }
    # Each child holds 64 MiB: the figure is the three processes', not the server's alone.
    assert samples["process_resident_memory_bytes"] > own_memory + 2 * 60 * 2**20
    assert samples["process_resident_memory_bytes"] == pytest.approx(memory, rel=0.1)
    assert samples["process_cpu_seconds_total"] >= own_cpu + 0.6  # two children's 0.3 s each
    assert samples["process_cpu_seconds_total"] <= cpu + reaped
    assert samples["process_start_time_seconds"] == pytest.approx(started, abs=1)


attempts: dict[str, int] = {}


@broker.task(task_name="tests.metrics.fails_once")
async def fails_once(key: str) -> None:
    attempts[key] = attempts.get(key, 0) + 1
    if attempts[key] == 1:
        raise RuntimeError("first attempt fails")


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_failed_task_is_counted_failed_then_retried_then_succeeded(app: FastAPI) -> None:
    task = {"task": "tests.metrics.fails_once"}
    names = ("failed", "retried", "succeeded", "started", "enqueued")
    before = {name: _sample(f"queue_tasks_{name}_total", **task) for name in names}
    await fails_once.kiq("metrics")
    await broker.wait_all()
    moved = {name: _sample(f"queue_tasks_{name}_total", **task) - before[name] for name in names}
    assert moved == {"failed": 1, "retried": 1, "succeeded": 1, "started": 2, "enqueued": 2}


async def test_rate_limit_refusals_and_redis_errors_are_counted(app: FastAPI) -> None:
    limiter = app.state.rate_limiter
    before = _sample("ratelimit_refusals_total", scope="metrics-test")
    key = f"metrics-{os.getpid()}-{time.time_ns()}"
    await limiter.hit(key=key, limit="1/minute", scope="metrics-test")
    with pytest.raises(RateLimited):
        await limiter.hit(key=key, limit="1/minute", scope="metrics-test")
    assert _sample("ratelimit_refusals_total", scope="metrics-test") - before == 1

    errors = _sample("redis_errors_total", error="ConnectionError")
    with pytest.raises(RedisConnectionError):
        async with RedisCircuit(retry_after=0):
            raise RedisConnectionError("refused")
    assert _sample("redis_errors_total", error="ConnectionError") - errors == 1


async def test_mail_the_server_refuses_is_counted_failed(app: FastAPI) -> None:
    settings = app.state.settings.model_copy(update={"smtp_port": 1})  # nothing listens there
    mailer = MailService(settings, MailTemplates({}))
    before = _sample("mail_failed_total")
    message = mailer.build(to="a@example.com", subject="s", text="t")
    with pytest.raises(aiosmtplib.SMTPConnectError):
        await mailer.send(message)
    assert _sample("mail_failed_total") - before == 1


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_gives_several_server_processes_a_multiprocess_directory(
    command_env: None, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    seen: dict[str, Any] = {}

    def run(*args: Any, **kwargs: Any) -> None:
        directory = os.environ.get(MULTIPROC_ENV)
        seen.update(workers=kwargs["workers"], directory=directory)
        seen["exists"] = directory is not None and Path(directory).is_dir()

    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    monkeypatch.setattr(uvicorn, "run", run)
    monkeypatch.setattr(signal, "signal", lambda *_: None)  # the test run keeps its handlers
    result = CliRunner().invoke(cli, ["serve", "--workers", str(workers)])
    assert result.exit_code == 0, result.output
    assert seen["workers"] == workers
    if workers == 1:
        assert seen["directory"] is None  # one process: its own registry, pool figures included
    else:
        assert seen["exists"]
        assert not Path(seen["directory"]).exists()  # gone with the server
    assert MULTIPROC_ENV not in os.environ
