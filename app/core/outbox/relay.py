"""The relay: moves committed outbox entries to the queue.

Every `app worker` runs one (OUTBOX_RELAY_IN_WORKER), and `app outbox relay` runs one on its
own; with QUEUE_BROKER=memory the app runs one in-process. Any number may run at once: each
pass takes its entries with `FOR UPDATE SKIP LOCKED` and marks them queued (committed), then
sends them with no transaction open, so an entry goes to the queue once per attempt (twice
only when the queue took it but answered too late). An insert notifies the relays
(PostgreSQL LISTEN/NOTIFY, from a trigger); they also look every OUTBOX_POLL_INTERVAL for
retries that came due and for entries whose outcome never came.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

import psycopg
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection
from taskiq.kicker import AsyncKicker

from app.core.config import Settings
from app.core.db import Database
from app.core.outbox.delivery import outbox_middleware
from app.core.outbox.models import NOTIFY_CHANNEL
from app.core.outbox.repository import OutboxRepository, TakenEntry
from app.core.queue import AppBroker, broker
from app.core.queue.middleware import OUTBOX_ATTEMPT_LABEL, OUTBOX_ENTRY_LABEL

log = structlog.get_logger("app.outbox")


class OutboxRelay:
    def __init__(self, database: Database, settings: Settings, *, target: AppBroker = broker):
        self.database = database
        self.target = target
        self.batch_size = settings.outbox_batch_size
        self.poll_interval = settings.outbox_poll_interval
        self.requeue_after = timedelta(seconds=settings.outbox_requeue_after)
        self.send_timeout = settings.redis_timeout
        self.entries = OutboxRepository()
        self._stopping = asyncio.Event()
        self._running: asyncio.Task[None] | None = None

    async def relay_due(self) -> int:
        """One pass: send what is due (a batch at most) and return how many were sent. When
        the queue does not answer, the rest of the batch stays pending, its attempt uncounted.
        An entry sent as often as its task may run, with no outcome ever (its worker died
        with it each time), is dead instead of being sent again."""
        async with self.database.sessionmaker() as session:
            taken = await self.entries.take_due(
                session, limit=self.batch_size, requeue_after=self.requeue_after
            )
            due: list[TakenEntry] = []
            for entry in taken:
                allowed = outbox_middleware.attempts_allowed(entry.task_name, entry.labels)
                if entry.attempt <= allowed:
                    due.append(entry)
                    continue
                error = f"no outcome after {allowed} attempts (a worker died running it?)"
                await self.entries.bury(session, id=entry.id, error=error)
                log.error(
                    "outbox_entry_dead", entry=entry.id, task_name=entry.task_name, error=error
                )
            await session.commit()
        sent = 0
        for entry in due:
            try:
                async with asyncio.timeout(self.send_timeout):
                    await self._send(entry)
            except Exception as error:  # the queue's client raises several kinds
                log.warning("outbox_send_failed", entry=entry.id, error=type(error).__name__)
                break
            sent += 1
        if sent < len(due):
            async with self.database.sessionmaker() as session:
                await self.entries.put_back(session, entries=due[sent:])
                await session.commit()
        if sent:
            log.debug("outbox_relayed", count=sent)
        return sent

    async def _send(self, entry: TakenEntry) -> None:
        labels = {**entry.labels, OUTBOX_ENTRY_LABEL: entry.id, OUTBOX_ATTEMPT_LABEL: entry.attempt}
        kicker: AsyncKicker[Any, Any] = AsyncKicker(
            task_name=entry.task_name, broker=self.target, labels=labels
        )
        await kicker.with_task_id(f"outbox-{entry.id}-{entry.attempt}").kiq(
            *entry.args, **entry.kwargs
        )

    # --- running as a loop -----------------------------------------------------------------

    def start(self) -> None:
        self._stopping.clear()
        self._running = asyncio.create_task(self.run(), name="outbox-relay")

    async def stop(self) -> None:
        """Let the pass under way finish, then stop."""
        self._stopping.set()
        if self._running is not None:
            await self._running
            self._running = None

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                async with self.database.engine.connect() as connection:
                    try:
                        await self._relay_while_listening(connection)
                    finally:
                        # The listening connection is closed rather than pooled: no LISTEN
                        # (and no half-read notification) reaches the pool's next user.
                        await connection.invalidate()
            except Exception as error:  # the database or the queue is down: wait, try again
                log.warning("outbox_relay_paused", error=repr(error))
                await self._sleep(self.poll_interval)

    async def _relay_while_listening(self, connection: AsyncConnection) -> None:
        await connection.exec_driver_sql(f"LISTEN {NOTIFY_CHANNEL}")
        listener = (await connection.get_raw_connection()).driver_connection
        assert isinstance(listener, psycopg.AsyncConnection)  # the engine's driver is psycopg
        while not self._stopping.is_set():
            if await self.relay_due() < self.batch_size:
                await self._until_notified(listener)

    async def _until_notified(self, listener: psycopg.AsyncConnection[Any]) -> None:
        """Wait for an insert's notification, the poll interval, or `stop()`."""

        async def notified() -> None:
            async for _ in listener.notifies(timeout=self.poll_interval, stop_after=1):
                pass

        waiter = asyncio.ensure_future(notified())
        stopper = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not waiter.done():
            waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter  # a connection error surfaces here, and pauses the relay

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def relay_until_idle(self, *, within: float = 10.0) -> None:
        """Relay until nothing is due and nothing waits for its outcome (with the in-memory
        queue, the tasks run meanwhile). Raises TimeoutError after `within` seconds."""
        async with asyncio.timeout(within):
            while True:
                await self.relay_due()
                await self.target.wait_all()
                async with self.database.sessionmaker() as session:
                    if not await self.entries.count_outstanding(session):
                        return
                await asyncio.sleep(0.01)
