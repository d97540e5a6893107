"""The outbox in one process: relays that share the work without sending an entry twice, the
outcome of each attempt (done, retried, dead), mail sent once however often it is delivered,
entries the queue lost, a queue that does not answer, the purge, and `app outbox`."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest
from fastapi import FastAPI
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from taskiq import BrokerMessage
from typer.testing import CliRunner

from app.cli import cli
from app.core.config import Settings
from app.core.mail import MailService, send_mail_task
from app.core.outbox import (
    OutboxEntry,
    OutboxRelay,
    enqueue,
    purge_outbox,
)
from app.core.queue import AppBroker, broker
from app.core.request_context import REQUEST_ID_LABEL, set_request_id
from tests.conftest import MailOutbox
from tests.support import queued_work_done

runs: Counter[str] = Counter()
runner = CliRunner()


@broker.task(task_name="tests.outbox.note")
async def note(word: str) -> None:
    runs[word] += 1


@broker.task(task_name="tests.outbox.poison")
async def poison(word: str) -> None:
    runs[word] += 1
    raise RuntimeError(f"{word} always fails")


@pytest.fixture(autouse=True)
def _forget_runs() -> Iterator[None]:
    runs.clear()
    yield
    runs.clear()


@pytest.fixture
async def paused_relay(app: FastAPI) -> AsyncIterator[OutboxRelay]:
    """The app's own relay, stopped for the test: the test relays by hand, to queues that
    run nothing (what they were sent is forgotten afterwards)."""
    relay: OutboxRelay = app.state.outbox_relay
    await relay.stop()
    try:
        yield relay
    finally:
        async with app.state.database.sessionmaker() as session:
            await session.execute(delete(OutboxEntry))
            await session.commit()
        relay.start()


class RecordingBroker(AppBroker):
    """A queue that keeps what it is sent instead of running it."""

    def __init__(self, *, fail: bool = False) -> None:
        super().__init__()
        self.sent: list[BrokerMessage] = []
        self.fail = fail

    async def kick(self, message: BrokerMessage) -> None:
        if self.fail:
            raise ConnectionError("the queue does not answer")
        await asyncio.sleep(0)  # another relay may run meanwhile
        self.sent.append(message)


async def _entries(session: AsyncSession) -> list[OutboxEntry]:
    session.expire_all()
    return list((await session.scalars(select(OutboxEntry).order_by(OutboxEntry.id))).all())


async def test_concurrent_relays_send_each_entry_once(
    app: FastAPI, settings: Settings, session: AsyncSession, paused_relay: OutboxRelay
) -> None:
    for n in range(240):
        enqueue(session, note, f"word-{n}")
    await session.commit()
    queue = RecordingBroker()
    small_batches = settings.model_copy(update={"outbox_batch_size": 25})
    relays = [OutboxRelay(app.state.database, small_batches, target=queue) for _ in range(3)]
    while sum(await asyncio.gather(*(relay.relay_due() for relay in relays))):
        pass
    sent = Counter(message.labels["outbox_entry"] for message in queue.sent)
    assert len(sent) == 240
    assert set(sent.values()) == {1}  # no entry went to the queue twice
    entries = await _entries(session)
    assert {(entry.status, entry.attempts) for entry in entries} == {("queued", 1)}


async def test_each_attempts_outcome_is_written_back(
    app: FastAPI, session: AsyncSession, settings: Settings
) -> None:
    token = set_request_id("req-outbox-1")
    try:
        enqueue(session, note, "fine")
        enqueue(session, poison, "toxic")
        enqueue(session, note, "also-fine")
    finally:
        set_request_id(None)
        del token
    await session.commit()
    await queued_work_done(app)
    fine, toxic, also_fine = await _entries(session)
    assert (fine.status, fine.attempts, fine.last_error) == ("done", 1, None)
    assert fine.labels[REQUEST_ID_LABEL] == "req-outbox-1"  # it travels with the work
    # The poison entry used its whole budget (QUEUE_MAX_RETRIES=3 retries), then stopped...
    assert (toxic.status, toxic.attempts) == ("dead", settings.queue_max_retries + 1)
    assert toxic.last_error == "RuntimeError: toxic always fails"
    assert runs["toxic"] == settings.queue_max_retries + 1
    # ...and held nothing else up.
    assert (also_fine.status, runs["also-fine"]) == ("done", 1)


async def test_a_task_that_opts_out_of_retries_is_dead_at_its_first_failure(
    app: FastAPI, session: AsyncSession
) -> None:
    enqueue(session, poison.kicker().with_labels(retry_on_error=False), "once-only")
    enqueue(session, poison.kicker().with_labels(max_retries=2), "twice")
    await session.commit()
    await queued_work_done(app)
    once, twice = await _entries(session)
    assert (once.status, once.attempts) == ("dead", 1)
    assert (twice.status, twice.attempts) == ("dead", 2)  # taskiq counts attempts here


async def test_a_mail_delivered_twice_is_sent_once(
    app: FastAPI, session: AsyncSession, mail_outbox: MailOutbox
) -> None:
    mailer: MailService = app.state.mailer
    mailer.queue(session, mailer.build(to="once@example.com", subject="Once", text="hi"))
    await session.commit()
    await mail_outbox.wait()
    await queued_work_done(app)
    (entry,) = await _entries(session)
    assert entry.status == "done"
    # The same attempt delivered again (a relay that died before it committed, a queue that
    # redelivered): twice at once, and once more later.
    labels = {"outbox_entry": entry.id, "outbox_attempt": entry.attempts}
    kicker = send_mail_task.kicker().with_labels(**labels)
    await asyncio.gather(*(kicker.kiq(*entry.args) for _ in range(2)))
    await broker.wait_all()
    await kicker.kiq(*entry.args)
    await broker.wait_all()
    assert [message["To"] for message in mail_outbox.arrived()] == ["once@example.com"]
    (entry,) = await _entries(session)
    assert (entry.status, entry.attempts) == ("done", 1)


async def test_two_deliveries_racing_for_one_attempt_send_one_mail(
    app: FastAPI, session: AsyncSession, mail_outbox: MailOutbox, paused_relay: OutboxRelay
) -> None:
    mailer: MailService = app.state.mailer
    mailer.queue(session, mailer.build(to="race@example.com", subject="Race", text="hi"))
    await session.commit()
    queue = RecordingBroker()
    await OutboxRelay(app.state.database, app.state.settings, target=queue).relay_due()
    (message,) = queue.sent
    await asyncio.gather(*(broker.kick(message) for _ in range(3)))  # three copies at once
    await broker.wait_all()
    await mail_outbox.wait()
    assert [sent["To"] for sent in mail_outbox.arrived()] == ["race@example.com"]
    (entry,) = await _entries(session)
    assert entry.status == "done"


async def test_an_entry_the_queue_lost_is_sent_again(
    app: FastAPI, settings: Settings, session: AsyncSession, paused_relay: OutboxRelay
) -> None:
    enqueue(session, note, "lost")
    await session.commit()
    queue = RecordingBroker()
    relay = OutboxRelay(app.state.database, settings, target=queue)
    assert await relay.relay_due() == 1
    assert await relay.relay_due() == 0  # queued: waiting for its outcome
    # Its outcome never came (Redis restarted without its data) for OUTBOX_REQUEUE_AFTER.
    later = timedelta(seconds=settings.outbox_requeue_after + 1)
    await session.execute(update(OutboxEntry).values(queued_at=func.now() - later))
    await session.commit()
    assert await relay.relay_due() == 1
    assert [int(message.labels["outbox_attempt"]) for message in queue.sent] == [1, 2]


async def test_an_entry_lost_as_often_as_its_budget_allows_ends_dead(
    app: FastAPI, settings: Settings, session: AsyncSession, paused_relay: OutboxRelay
) -> None:
    """A task that takes its worker down with it (or a worker too old to know it) never
    reports: the entry is sent again after OUTBOX_REQUEUE_AFTER, its budget's worth, then
    it is dead rather than sent every hour for ever."""
    enqueue(session, note, "vanishing")
    await session.commit()
    queue = RecordingBroker()
    relay = OutboxRelay(app.state.database, settings, target=queue)
    later = timedelta(seconds=settings.outbox_requeue_after + 1)
    budget = settings.queue_max_retries + 1
    for _ in range(budget + 1):
        await relay.relay_due()
        await session.execute(update(OutboxEntry).values(queued_at=func.now() - later))
        await session.commit()
    assert [int(message.labels["outbox_attempt"]) for message in queue.sent] == [
        *range(1, budget + 1)
    ]
    (entry,) = await _entries(session)
    assert entry.status == "dead"
    assert entry.finished_at is not None
    assert entry.last_error == f"no outcome after {budget} attempts (a worker died running it?)"


async def test_entries_are_committed_as_queued_before_they_are_sent(
    app: FastAPI, settings: Settings, session: AsyncSession, paused_relay: OutboxRelay
) -> None:
    """The relay holds no transaction (nor row locks) while the queue answers: a worker may
    run the task at once, and a slow queue keeps no connection idle in a transaction."""
    enqueue(session, note, "watched")
    await session.commit()
    seen_while_sending: list[tuple[str, int]] = []

    class WatchingBroker(RecordingBroker):
        async def kick(self, message: BrokerMessage) -> None:
            async with app.state.database.sessionmaker() as other:
                row = (await other.execute(select(OutboxEntry.status, OutboxEntry.attempts))).one()
                seen_while_sending.append((row.status, row.attempts))
                idle_in_transaction = await other.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND state = 'idle in transaction' AND pid <> pg_backend_pid()"
                    )
                )
            assert idle_in_transaction == 0
            await super().kick(message)

    relay = OutboxRelay(app.state.database, settings, target=WatchingBroker())
    assert await relay.relay_due() == 1
    assert seen_while_sending == [("queued", 1)]


async def test_a_commit_wakes_a_waiting_relay_at_once(
    app: FastAPI, settings: Settings, session: AsyncSession, paused_relay: OutboxRelay
) -> None:
    """Relays LISTEN for the outbox's NOTIFY: work committed while one waits is sent at once,
    not at its next look (set here to half a minute)."""
    queue = RecordingBroker()
    patient = settings.model_copy(update={"outbox_poll_interval": 30})
    relay = OutboxRelay(app.state.database, patient, target=queue)
    relay.start()
    try:
        await asyncio.sleep(0.5)  # its first look found nothing: it waits
        enqueue(session, note, "wake")
        await session.commit()
        loop = asyncio.get_running_loop()
        committed = loop.time()
        while not queue.sent:
            assert loop.time() - committed < 5, "the relay slept through the commit"
            await asyncio.sleep(0.02)
    finally:
        await relay.stop()
    assert [message.task_name for message in queue.sent] == ["tests.outbox.note"]


async def test_a_queue_that_does_not_answer_leaves_the_entries_pending(
    app: FastAPI, settings: Settings, session: AsyncSession, paused_relay: OutboxRelay
) -> None:
    for word in ("a", "b", "c"):
        enqueue(session, note, word)
    await session.commit()
    relay = OutboxRelay(app.state.database, settings, target=RecordingBroker(fail=True))
    assert await relay.relay_due() == 0
    entries = await _entries(session)
    assert {(entry.status, entry.attempts) for entry in entries} == {("pending", 0)}
    working = OutboxRelay(app.state.database, settings, target=RecordingBroker())
    assert await working.relay_due() == 3  # once the queue answers, nothing was lost


async def test_finished_entries_are_purged_after_their_keeping_time(
    app: FastAPI, session: AsyncSession, settings: Settings
) -> None:
    for word in ("old", "recent"):
        enqueue(session, note, word)
    enqueue(session, poison.kicker().with_labels(retry_on_error=False), "dead")
    await session.commit()
    await queued_work_done(app)
    kept = timedelta(hours=settings.outbox_keep_done_hours, minutes=1)
    await session.execute(
        update(OutboxEntry)
        .where(OutboxEntry.args[0].astext.in_(["old", "dead"]))
        .values(finished_at=func.now() - kept)
    )
    await session.commit()
    await purge_outbox.kiq()
    await broker.wait_all()
    assert [(entry.args, entry.status) for entry in await _entries(session)] == [
        (["recent"], "done"),
        (["dead"], "dead"),  # dead entries wait for a person
    ]
    assert "core.outbox.purge" in {
        task.task_name for task in broker.get_all_tasks().values() if task.labels.get("schedule")
    }


async def test_dead_entries_are_listed_retried_and_discarded_with_app_outbox(
    app: FastAPI, session: AsyncSession, command_env: None
) -> None:
    enqueue(session, poison.kicker().with_labels(retry_on_error=False), "stubborn")
    enqueue(session, note, "fine")
    await session.commit()
    await queued_work_done(app)
    dead, _ = await _entries(session)

    def app_outbox(*args: str) -> str:
        result = runner.invoke(cli, ["outbox", *args])
        assert result.exit_code == 0, result.output
        return result.output

    listed = await asyncio.to_thread(app_outbox, "list")
    assert "pending: 0  queued: 0  done: 1  dead: 1" in listed
    assert f"{dead.id}  dead" in listed
    assert "tests.outbox.poison  RuntimeError: stubborn always fails" in listed
    everything = await asyncio.to_thread(app_outbox, "list", "--all")
    assert "tests.outbox.note" in everything

    assert "1 entries will be sent again" in await asyncio.to_thread(
        app_outbox, "retry", str(dead.id)
    )
    await queued_work_done(app)
    assert runs["stubborn"] == 2  # it ran again, with a new budget, and died again
    (dead, _) = await _entries(session)
    assert (dead.status, dead.attempts) == ("dead", 1)

    assert "1 dead entries discarded" in await asyncio.to_thread(
        app_outbox, "discard", str(dead.id)
    )
    assert [entry.args for entry in await _entries(session)] == [["fine"]]
    refused = runner.invoke(cli, ["outbox", "retry"])
    assert refused.exit_code == 2
    assert "name entry ids, or --all-dead" in refused.output
