"""No lost work, with real processes: `app serve`, `app worker` and `app outbox relay` on a
private PostgreSQL, Redis and SMTP catcher. Redis stops or freezes during a registration; the
API dies right after a commit; two relays share a burst with a poison entry among it; SIGTERM
reaches an API under load and a worker in the middle of a task. Figures go to
docs/reliability.md (`tests/reliability/figures.py`)."""

from __future__ import annotations

import asyncio
import email.message
import os
import signal
import sys
import time
from collections import Counter
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select

from app.core.mail import send_mail_task
from app.core.outbox import enqueue
from app.modules.users.models import User
from tests.reliability.conftest import wait_until
from tests.reliability.figures import record
from tests.reliability.stack import APP, Stack
from tests.support import PROJECT_ROOT

pytestmark = pytest.mark.e2e

REGISTER = "/api/v1/auth/register"


def _registration(name: str) -> dict[str, str]:
    return {"email": f"{name}@example.com", "username": name, "password": "long-password-1"}


@pytest.mark.parametrize("outage", ["frozen", "stopped"])
async def test_redis_down_during_a_registration_delays_its_mail_and_loses_nothing(
    stack: Stack, outage: str
) -> None:
    await stack.worker()
    api = stack.api()
    redis_process = stack.redis.process
    assert redis_process is not None
    if outage == "frozen":
        os.kill(redis_process.pid, signal.SIGSTOP)
    else:
        stack.redis.stop()
    try:
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
            started = time.perf_counter()
            response = await http.post(REGISTER, json=_registration("coldstart"))
            answered = time.perf_counter() - started
        assert response.status_code == 202, response.text
        await asyncio.sleep(1.0)
        assert stack.mail_to() == Counter()  # no queue, no mail yet...
    finally:
        if outage == "frozen":
            os.kill(redis_process.pid, signal.SIGCONT)
        else:
            stack.redis.start()
    back = time.perf_counter()
    await wait_until(lambda: stack.mail_to(), within=30)
    delivered = time.perf_counter() - back
    await asyncio.sleep(0.5)
    # ...and once it is back, the verification link arrives by itself, once.
    assert stack.mail_to() == Counter({"coldstart@example.com": 1})
    (entry,) = await stack.entries()
    assert entry.status == "done"
    record(
        f"redis_{outage}_during_registration",
        answered_s=round(answered, 2),
        mail_after_redis_back_s=round(delivered, 2),
        attempts=entry.attempts,
    )


async def test_an_api_killed_right_after_the_commit_loses_no_mail(stack: Stack) -> None:
    await stack.worker()
    doomed = stack.api(sys.executable, "-m", "tests.reliability.kill_after_commit")
    async with httpx.AsyncClient(base_url=doomed.url, timeout=30) as http:
        with pytest.raises(httpx.TransportError):  # the process died before answering
            await http.post(REGISTER, json=_registration("sudden"))
    assert doomed.process is not None
    assert doomed.process.wait(timeout=10) == -signal.SIGKILL
    async with stack.database.sessionmaker() as session:
        count = select(func.count()).select_from(User).where(User.username == "sudden")
        assert await session.scalar(count) == 1  # the account was committed...
    started = time.perf_counter()
    await wait_until(lambda: stack.mail_to(), within=30)
    # ...and so was its mail: a worker's relay found it, nobody did anything by hand.
    assert stack.mail_to() == Counter({"sudden@example.com": 1})
    record("api_killed_after_commit", mail_after_kill_s=round(time.perf_counter() - started, 2))


def _raw_mail(to: str) -> str:
    message = email.message.EmailMessage()
    message["From"] = "app@example.com"
    message["To"] = to
    message["Subject"] = f"For {to}"
    message.set_content("hello")
    return message.as_string()


async def _stream_deliveries(stack: Stack) -> Counter[tuple[int, int]]:
    """(entry, attempt) of every message the relays put on the queue."""
    from taskiq.serializers import JSONSerializer

    serializer = JSONSerializer()
    async with Redis.from_url(stack.redis.url) as redis:
        messages: Any = await redis.xrange(f"{stack.name}:tasks")
    sent: Counter[tuple[int, int]] = Counter()
    for _, fields in messages:
        labels: dict[str, Any] = serializer.loadb(fields[b"data"])["labels"]
        sent[(int(labels["outbox_entry"]), int(labels["outbox_attempt"]))] += 1
    return sent


async def _app_outbox(stack: Stack, *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        APP, "outbox", *args, cwd=PROJECT_ROOT, env=stack.env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    return output.decode()


async def test_two_relays_share_a_burst_and_a_poison_entry_ends_dead_without_blocking(
    stack: Stack,
) -> None:
    burst = 300
    stack.catcher.handler.refuse.add("poison@example.com")  # refused for good: 550
    relays = [await stack.relay() for _ in range(2)]
    async with stack.database.sessionmaker() as session:
        enqueue(session, send_mail_task, _raw_mail("poison@example.com"))
        for n in range(burst):
            enqueue(session, send_mail_task, _raw_mail(f"reader{n}@example.com"))
        await session.commit()
    started = time.perf_counter()

    async def all_on_the_queue() -> bool:
        return sum((await _stream_deliveries(stack)).values()) >= burst + 1

    await wait_until(all_on_the_queue, within=30, interval=0.1)
    relayed = time.perf_counter() - started
    await asyncio.sleep(0.5)  # a second copy of any entry would show by now
    assert {entry.status for entry in await stack.entries()} == {"queued"}
    sent = await _stream_deliveries(stack)
    assert len(sent) == burst + 1
    assert set(sent.values()) == {1}  # two relays, and no entry went to the queue twice

    for _ in range(2):
        # The two relays stay the only ones. Each worker reads a hundred tasks at a time, and on
        # a loaded machine some wait longer than the stack's 1 s QUEUE_REDELIVERY_TIMEOUT before
        # they start: the other worker would claim them, and a mail claim lapses after half that.
        await stack.worker(OUTBOX_RELAY_IN_WORKER="false", QUEUE_REDELIVERY_TIMEOUT="30")

    async def settled() -> bool:
        return all(entry.status in ("done", "dead") for entry in await stack.entries())

    await wait_until(settled, within=60, interval=0.2)
    delivered = time.perf_counter() - started
    current = await stack.entries()
    poison, readers = current[0], current[1:]
    assert {entry.status for entry in readers} == {"done"}
    assert (poison.status, poison.attempts) == ("dead", 3)  # QUEUE_MAX_RETRIES=2: 3 attempts
    assert poison.last_error is not None
    assert "SMTPRecipientsRefused" in poison.last_error
    mailed = stack.mail_to()
    assert len(mailed) == burst
    assert set(mailed.values()) == {1}
    assert "poison@example.com" not in mailed
    sent = await _stream_deliveries(stack)
    assert [count for (entry, _), count in sent.items() if entry == poison.id] == [1, 1, 1]

    listed = await _app_outbox(stack, "list")
    assert f"pending: 0  queued: 0  done: {burst}  dead: 1" in listed
    assert f"{poison.id}  dead      3x" in listed
    assert "SMTPRecipientsRefused" in listed
    assert "1 entries will be sent again" in await _app_outbox(stack, "retry", str(poison.id))

    async def dead_again() -> bool:
        entry = (await stack.entries())[0]
        return entry.status == "dead" and entry.attempts == 3 and entry.id == poison.id

    await wait_until(dead_again, within=30, interval=0.2)
    assert "1 dead entries discarded" in await _app_outbox(stack, "discard", str(poison.id))
    assert [entry.id for entry in await stack.entries()][:1] != [poison.id]
    record(
        "two_relays_burst",
        entries=burst + 1,
        relayed_s=round(relayed, 2),
        all_settled_s=round(delivered, 2),
        duplicates_on_queue=sum(count - 1 for count in sent.values()),
        poison_attempts=3,
    )
    for relay in relays:
        relay.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(relay.wait(), 10) == 0


async def test_sigterm_under_load_fails_no_request_accepted_before_it(stack: Stack) -> None:
    # Hashing as slow as a small production box: requests stay in flight long enough.
    api = stack.api(
        USERS_PASSWORD_HASH_TIME_COST="2",
        USERS_PASSWORD_HASH_MEMORY_KIB="19456",
        SERVER_GRACEFUL_TIMEOUT="20",
    )
    assert api.process is not None
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=api.url, timeout=30, limits=limits) as http:
        before = [
            asyncio.create_task(http.post(REGISTER, json=_registration(f"early{n}")))
            for n in range(40)
        ]
        await asyncio.sleep(0.5)  # every one of them sent and in the server's hands
        in_flight = sum(not task.done() for task in before)
        signalled = time.perf_counter()
        api.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.2)
        with pytest.raises(httpx.TransportError):  # no longer accepting
            await http.post(REGISTER, json=_registration("late"))
        answers = await asyncio.gather(*before)
    exit_code = await asyncio.to_thread(api.process.wait, 30)
    drained = time.perf_counter() - signalled
    assert Counter(answer.status_code for answer in answers) == {202: 40}
    assert exit_code == 0
    assert in_flight > 0  # the signal did come under load
    async with stack.database.sessionmaker() as session:
        count = select(func.count()).select_from(User).where(User.username.like("early%"))
        assert await session.scalar(count) == 40
    record(
        "api_sigterm_under_load",
        requests=40,
        in_flight_at_signal=in_flight,
        failed=0,
        drain_and_exit_s=round(drained, 2),
    )


async def test_sigterm_lets_a_worker_finish_its_task_or_leave_it_for_another(
    stack: Stack,
) -> None:
    # A slow SMTP server: the mail is in the middle of being sent when SIGTERM comes...
    stack.catcher.handler.delay = 1.5
    worker = await stack.worker(QUEUE_SHUTDOWN_TIMEOUT="10")
    async with stack.database.sessionmaker() as session:
        enqueue(session, send_mail_task, _raw_mail("patient@example.com"))
        await session.commit()

    async def claimed() -> bool:
        return any(entry.claimed_at is not None for entry in await stack.entries())

    await wait_until(claimed, within=20)
    await asyncio.sleep(0.3)
    signalled = time.perf_counter()
    os.killpg(worker.pid, signal.SIGTERM)
    assert await asyncio.wait_for(worker.wait(), 30) == 0
    finished = time.perf_counter() - signalled
    # ...and the worker finished it before it exited.
    assert stack.mail_to() == Counter({"patient@example.com": 1})
    assert [entry.status for entry in await stack.entries()] == ["done"]

    # A task that outlasts QUEUE_SHUTDOWN_TIMEOUT (an SMTP server that never greets) is left
    # unacknowledged: the next worker runs it, and the mail is sent once.
    greeted = asyncio.Event()
    stalled: list[asyncio.StreamWriter] = []

    async def never_greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stalled.append(writer)
        greeted.set()

    staller = await asyncio.start_server(never_greet, "127.0.0.1", 0)
    stall_port = str(staller.sockets[0].getsockname()[1])
    try:
        stack.catcher.handler.delay = 0
        stuck = await stack.worker(QUEUE_SHUTDOWN_TIMEOUT="1", SMTP_PORT=stall_port)
        async with stack.database.sessionmaker() as session:
            enqueue(session, send_mail_task, _raw_mail("later@example.com"))
            await session.commit()
        await asyncio.wait_for(greeted.wait(), 20)
        signalled = time.perf_counter()
        os.killpg(stuck.pid, signal.SIGTERM)
        assert await asyncio.wait_for(stuck.wait(), 30) == 0
        gave_up = time.perf_counter() - signalled
        assert "later@example.com" not in stack.mail_to()
        await stack.worker()
        await wait_until(lambda: "later@example.com" in stack.mail_to(), within=30)
        await asyncio.sleep(0.5)
        assert stack.mail_to()["later@example.com"] == 1
    finally:
        for writer in stalled:
            writer.close()
        staller.close()
    record(
        "worker_sigterm",
        finished_task_then_exited_s=round(finished, 2),
        left_unfinished_task_and_exited_s=round(gave_up, 2),
    )
