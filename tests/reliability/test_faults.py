"""Failing dependencies, for real: a private PostgreSQL, Redis and SMTP server that these tests
stop and start (the session's shared servers are never touched), and a worker killed mid-task."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator

import pytest
from asgi_lifespan import LifespanManager
from fastapi import APIRouter, FastAPI
from httpx import AsyncClient
from redis.asyncio import Redis
from sqlalchemy import func, select

from app.core.cache import Cache
from app.core.embedded import EmbeddedRedis
from app.core.mail import MailService, MailTemplates
from app.core.mail.catcher import MailCatcher
from app.core.mail.service import send_mail_task
from app.core.outbox import OutboxRelay
from app.core.queue import broker
from app.core.queue.broker import AppBroker, ReclaimingStreamBroker
from app.main import create_app
from app.modules.users.models import User
from tests.conftest import MailOutbox, Services, make_settings
from tests.factories.users import create_user
from tests.reliability.conftest import (
    PrivatePostgres,
    bearer,
    free_port,
    login,
    server_env,
    wait_until,
)
from tests.reliability.figures import record
from tests.support import PROJECT_ROOT, http_client, queued_work_done

RECOVERY_LIMIT = 5.0


cached_router = APIRouter()
computed: list[int] = []


@cached_router.get("/test/cached/{n}")
async def cached_square(n: int, cache: Cache) -> dict[str, int]:
    async def compute() -> int:
        computed.append(n)
        return n * n

    return {"square": await cache.get_or_set(f"square:{n}", compute)}


@pytest.fixture(scope="module")
async def faulty_app(
    services: Services, private_postgres: PrivatePostgres, private_redis: EmbeddedRedis
) -> AsyncIterator[FastAPI]:
    settings = make_settings(
        services,
        database_url=private_postgres.url,
        redis_url=private_redis.url,
        db_pool_timeout=1,
        redis_timeout=0.5,
        redis_retry_after=0.2,
        health_timeout=0.5,
    )
    app = create_app(settings)
    app.include_router(cached_router)
    async with LifespanManager(app):
        yield app


@pytest.fixture
async def http(faulty_app: FastAPI) -> AsyncIterator[AsyncClient]:
    async with http_client(faulty_app) as client:
        yield client


async def _users(app: FastAPI) -> int:
    async with app.state.database.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(User)) or 0)


@pytest.mark.e2e  # fault injection takes seconds of outages: make e2e
async def test_postgres_down_is_503_then_recovers_alone_without_partial_writes(
    faulty_app: FastAPI,
    http: AsyncClient,
    private_postgres: PrivatePostgres,
    mail_outbox: MailOutbox,
) -> None:
    async with faulty_app.state.database.sessionmaker() as session:
        user = await create_user(session, username="pgfault", email="pgfault@example.com")
    headers = bearer((await login(http, "pgfault"))["access_token"])
    before = await _users(faulty_app)
    registration = {
        "email": "during@example.com",
        "username": "during",
        "password": "long-password-1",
    }

    private_postgres.stop()
    try:
        ready = await http.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"] == {"database": "fail", "redis": "ok"}
        for method, url, body in [
            ("GET", f"/api/v1/users/{user.id}", None),
            ("GET", "/api/v1/users/me", None),
            ("POST", "/api/v1/auth/register", registration),
            ("PATCH", "/api/v1/users/me", {"username": "renamed"}),
        ]:
            response = await http.request(method, url, json=body, headers=headers)
            assert response.status_code == 503, (method, url, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["retry-after"] == "5"
    finally:
        private_postgres.start()

    async def answers() -> bool:
        response = await http.get(f"/api/v1/users/{user.id}", headers=headers)
        return response.status_code == 200

    recovered = await wait_until(answers, within=RECOVERY_LIMIT)
    assert (await http.get("/health/ready")).status_code == 200
    record("postgres_outage", recovery_s=round(recovered, 2))
    # Nothing of the refused writes was stored; the same requests now succeed once.
    assert await _users(faulty_app) == before
    me = (await http.get("/api/v1/users/me", headers=headers)).json()
    assert me["username"] == "pgfault"
    assert (await http.post("/api/v1/auth/register", json=registration)).status_code == 202
    assert await _users(faulty_app) == before + 1
    # Its verification mail arrives once, here: not in whichever test runs next.
    assert (await mail_outbox.wait(within=10))["To"] == "during@example.com"
    await queued_work_done(faulty_app)
    assert [message["To"] for message in mail_outbox.arrived()] == ["during@example.com"]


@pytest.mark.e2e  # fault injection takes seconds of outages: make e2e
async def test_redis_down_degrades_and_recovers_alone(
    services: Services,
    faulty_app: FastAPI,
    http: AsyncClient,
    private_redis: EmbeddedRedis,
    private_postgres: PrivatePostgres,
) -> None:
    async with faulty_app.state.database.sessionmaker() as session:
        user = await create_user(session, username="rdfault", email="rdfault@example.com")
    headers = bearer((await login(http, "rdfault"))["access_token"])
    url = f"/api/v1/users/{user.id}"
    closed = create_app(
        make_settings(
            services,
            database_url=private_postgres.url,
            redis_url=private_redis.url,
            redis_timeout=0.5,
            rate_limit_fail_open=False,
        )
    )
    computed.clear()
    assert (await http.get("/test/cached/3")).json() == {"square": 9}
    assert (await http.get("/test/cached/3")).json() == {"square": 9}
    assert computed == [3]  # the second read came from Redis

    private_redis.stop()
    try:
        ready = await http.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"] == {"database": "ok", "redis": "fail"}
        # Cached reads still answer (computed), API reads too: the limiter fails open...
        assert (await http.get("/test/cached/3")).json() == {"square": 9}
        assert computed == [3, 3]
        opened = await http.get(url, headers=headers)
        assert opened.status_code == 200
        # ...or closed, as RATE_LIMIT_FAIL_OPEN says.
        async with (
            LifespanManager(closed),
            http_client(closed) as strict,
        ):
            refused = await strict.get(url, headers=headers)
        assert refused.status_code == 503
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["retry-after"] == "5"
        # Sign-in is refused too, whatever RATE_LIMIT_FAIL_OPEN says: its budgets cannot be
        # counted, and unlimited guessing is not an outage mode.
        sign_in = await http.post(
            "/api/v1/auth/login", data={"username": "redisfault", "password": "whatever-it-is"}
        )
        assert sign_in.status_code == 503
    finally:
        private_redis.start()

    async def ready_again() -> bool:
        return (await http.get("/health/ready")).status_code == 200

    recovered = await wait_until(ready_again, within=RECOVERY_LIMIT)
    # The app asks Redis again REDIS_RETRY_AFTER after its last failed call.
    circuit = faulty_app.state.rate_limiter.circuit
    recovered += await wait_until(lambda: not circuit.is_open, within=RECOVERY_LIMIT)
    record("redis_outage", recovery_s=round(recovered, 2))
    counted = [await http.get(url, headers=headers) for _ in range(2)]
    remaining = [int(r.headers["ratelimit-remaining"]) for r in counted]
    assert remaining[0] > remaining[1]  # the limiter counts again
    computed.clear()
    await http.get("/test/cached/4")
    await http.get("/test/cached/4")
    assert computed == [4]  # and the cache caches again


@pytest.mark.e2e  # fault injection takes seconds of outages: make e2e
async def test_a_frozen_redis_costs_a_request_one_timeout_at_most_and_never_a_500(
    services: Services,
    private_redis: EmbeddedRedis,
    private_postgres: PrivatePostgres,
    mail_outbox: MailOutbox,
) -> None:
    """Redis stops answering (SIGSTOP: connections stay open, replies never come). Use cases
    that can do without it answer as usual, the first call to Redis costing REDIS_TIMEOUT and
    the calls after it nothing (REDIS_RETRY_AFTER); those that cannot (password checks) answer
    503 within REDIS_TIMEOUT. Registration commits its account and its mail together, and the
    mail goes once Redis answers again."""
    timeout = 3.0  # long enough that a loaded machine never passes for a wait on Redis
    settings = make_settings(
        services,
        database_url=private_postgres.url,
        redis_url=private_redis.url,
        redis_timeout=timeout,
        redis_retry_after=30,  # down for the whole test once it has failed
        health_timeout=0.5,
    )
    frozen_app = create_app(settings)
    frozen_app.include_router(cached_router)
    async with LifespanManager(frozen_app), http_client(frozen_app) as http:
        async with frozen_app.state.database.sessionmaker() as session:
            await create_user(session, username="frozen", email="frozen@example.com")
        headers = bearer((await login(http, "frozen"))["access_token"])
        assert private_redis.process is not None
        relay: OutboxRelay = frozen_app.state.outbox_relay
        await relay.stop()  # the memory queue needs no Redis: keep the mail in the outbox
        os.kill(private_redis.process.pid, signal.SIGSTOP)
        answers: dict[str, tuple[int, float]] = {}
        try:
            for name, method, url, body in [
                ("register", "POST", "/api/v1/auth/register", {
                    "email": "cold@example.com", "username": "cold",
                    "password": "long-password-1",
                }),
                ("me", "GET", "/api/v1/users/me", None),
                ("rename", "PATCH", "/api/v1/users/me", {"username": "frosty"}),
                ("cached", "GET", "/test/cached/5", None),
                ("forgot", "POST", "/api/v1/auth/password/forgot", {"email": "x@example.com"}),
                ("change password", "PUT", "/api/v1/users/me/password", {
                    "current_password": "long-password-1", "new_password": "orbit-lantern-q",
                }),
                ("sign in", "POST", "/api/v1/auth/login", None),
            ]:  # fmt: skip
                started = time.perf_counter()
                if name == "sign in":
                    form = {"username": "frozen", "password": "whatever-it-is"}
                    response = await http.post(url, data=form)
                else:
                    response = await http.request(method, url, json=body, headers=headers)
                answers[name] = (response.status_code, time.perf_counter() - started)
        finally:
            os.kill(private_redis.process.pid, signal.SIGCONT)
        statuses = {name: status for name, (status, _) in answers.items()}
        assert statuses == {
            "register": 202,
            "me": 200,
            "rename": 200,
            "cached": 200,
            "forgot": 202,
            "change password": 503,  # its attempt budget lives in Redis: refused, not unlimited
            "sign in": 503,
        }
        seconds = [elapsed for _, elapsed in answers.values()]
        # The first call paid the timeout; no request waited on Redis twice, none waited after.
        assert seconds[0] < 1.8 * timeout, answers
        assert max(seconds[1:]) < 0.5 * timeout, answers
        record(
            "redis_frozen",
            first_request_s=round(seconds[0], 2),
            slowest_later_request_s=round(max(seconds[1:]), 3),
        )
        # The account and its verification mail were committed together: nothing was lost.
        relay.start()
        await mail_outbox.wait(within=10)
        await queued_work_done(frozen_app)
        assert [message["To"] for message in mail_outbox.arrived()] == ["cold@example.com"]


@pytest.mark.e2e  # fault injection takes seconds of outages: make e2e
async def test_queued_mail_waits_out_an_smtp_outage(faulty_app: FastAPI) -> None:
    port = free_port()
    catcher = MailCatcher(port=port)
    mailer = MailService(
        faulty_app.state.settings.model_copy(update={"smtp_port": port, "smtp_timeout": 2}),
        faulty_app.state.mailer.templates,
    )
    await queued_work_done(faulty_app)  # earlier tests' mail is not this catcher's
    # The task resolves its mailer from the app's state, as a worker does.
    previous = faulty_app.state.mailer
    faulty_app.state.mailer = mailer
    try:
        message = mailer.build(to="patient@example.com", subject="After the outage", text="hi")
        # Nothing listens on the port: each attempt fails, and is retried with backoff.
        await send_mail_task.kicker().with_labels(delay=0.2, max_retries=6).kiq(message.as_string())
        await asyncio.sleep(0.3)
        assert catcher.handler.messages == []
        catcher.start()
        try:
            await asyncio.wait_for(broker.wait_all(), 15)
            assert [m["Subject"] for m in catcher.handler.messages] == ["After the outage"]
        finally:
            catcher.stop()
    finally:
        faulty_app.state.mailer = previous


# Real worker processes, one killed: `make e2e`.
@pytest.mark.e2e
async def test_a_task_whose_worker_was_killed_is_delivered_again_and_completes_once(
    services: Services, private_redis: EmbeddedRedis, private_postgres: PrivatePostgres
) -> None:
    """`app worker` on the Redis stream is SIGKILLed while sending a mail (its SMTP server
    accepted the connection and stalls); a second worker claims the unacknowledged task after
    QUEUE_REDELIVERY_TIMEOUT and delivers it. The mail arrives exactly once."""
    from taskiq.kicker import AsyncKicker
    from taskiq_redis import RedisStreamBroker

    connected = asyncio.Event()
    stalled: list[asyncio.StreamWriter] = []

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stalled.append(writer)  # never greets: the worker waits inside the task
        connected.set()

    staller = await asyncio.start_server(stall, "127.0.0.1", 0)
    stall_port = staller.sockets[0].getsockname()[1]
    catcher = MailCatcher().start()
    base = server_env(
        DATABASE_URL=private_postgres.url,
        REDIS_URL=private_redis.url,
        QUEUE_BROKER="redis",
        QUEUE_REDELIVERY_TIMEOUT="1",
        SMTP_HOST="127.0.0.1",
        SMTP_TIMEOUT="30",
        APP_NAME="killtest",
    )
    producer = RedisStreamBroker(url=private_redis.url, queue_name="killtest:tasks")
    await producer.startup()
    workers: list[asyncio.subprocess.Process] = []

    async def start_worker(smtp_port: int) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            str(PROJECT_ROOT / ".venv/bin/app"), "worker",
            cwd=PROJECT_ROOT, env={**base, "SMTP_PORT": str(smtp_port)},
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,  # its own process group: the worker and its children
        )  # fmt: skip
        workers.append(process)
        return process

    try:
        doomed = await start_worker(stall_port)
        message = MailService(make_settings(services), MailTemplates({})).build(
            to="once@example.com", subject="Exactly once", text="hi"
        )
        kicker: AsyncKicker[[str], None] = AsyncKicker(
            task_name="core.mail.send", broker=producer, labels={}
        )
        await kicker.kiq(message.as_string())
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.wait_for(connected.wait(), 20)  # the task is running in the worker
        in_task = loop.time() - started
        os.killpg(doomed.pid, signal.SIGKILL)  # the worker and its children, like an OOM kill
        await doomed.wait()
        killed_at = loop.time()
        await start_worker(catcher.port)
        await wait_until(lambda: catcher.handler.messages, within=20)
        redelivered = loop.time() - killed_at

        async def acknowledged() -> bool:
            pending = await redis.xpending("killtest:tasks", "killtest:workers")
            return int(pending["pending"]) == 0

        redis = Redis.from_url(private_redis.url)
        try:
            await wait_until(acknowledged, within=5)
        finally:
            await redis.aclose()
        # Acknowledged, so never delivered again: exactly one mail.
        assert [m["Subject"] for m in catcher.handler.messages] == ["Exactly once"]
        record("worker_killed", in_task_after_s=round(in_task, 2),
               redelivered_after_s=round(redelivered, 2))  # fmt: skip
    finally:
        for process in workers:
            if process.returncode is None:
                os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        await producer.shutdown()
        catcher.stop()
        for writer in stalled:
            writer.close()
        staller.close()


async def test_an_abandoned_task_is_reclaimed_on_an_idle_queue(
    private_redis: EmbeddedRedis,
) -> None:
    """In process, the same guarantee: a message read and never acknowledged (its reader
    died) is handed to another consumer once idle for `idle_timeout`, with no new traffic."""
    from taskiq import BrokerMessage

    def consumer(name: str) -> ReclaimingStreamBroker:
        return ReclaimingStreamBroker(
            url=private_redis.url,
            queue_name="reclaim:tasks",
            consumer_group_name="reclaim:workers",
            consumer_name=name,
            consumer_id="0",
            xread_block=100,
            idle_timeout=200,
        )

    first, second = consumer("first"), consumer("second")
    await first.startup()
    await second.startup()
    try:
        await first.kick(BrokerMessage(task_id="1", task_name="t", message=b"payload", labels={}))
        dying = first.listen()
        taken = await anext(dying)
        assert taken.data == b"payload"
        await dying.aclose()  # read, never acknowledged: the reader "died"

        listener = second.listen()
        claimed = await asyncio.wait_for(anext(listener), 5)
        assert claimed.data == b"payload"
        acknowledged = claimed.ack()
        assert acknowledged is not None
        await acknowledged
        await listener.aclose()
        redis = Redis.from_url(private_redis.url)
        try:
            pending = await redis.xpending("reclaim:tasks", "reclaim:workers")
        finally:
            await redis.aclose()
        assert pending["pending"] == 0
    finally:
        await first.shutdown()
        await second.shutdown()


def test_the_app_broker_reclaims_after_queue_redelivery_timeout(services: Services) -> None:
    app_broker = AppBroker()
    app_broker.configure(
        make_settings(services, queue_broker="redis", queue_redelivery_timeout=2.5)
    )
    assert isinstance(app_broker.transport, ReclaimingStreamBroker)
    assert app_broker.transport.idle_timeout == 2500
    assert app_broker.transport.queue_name == "app:tasks"
