"""`app outbox`: see what queued work is waiting or dead, send it again, or run a relay."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from app.core.outbox.models import OutboxStatus

if TYPE_CHECKING:
    from app.core.config import Settings
    from app.core.db import Database

cli = typer.Typer(no_args_is_help=True, help=__doc__)
T = TypeVar("T")


def _run(use: Callable[[Database, Settings], Awaitable[T]]) -> T:
    """Run `use(database, settings)` against the configured database (embedded in dev)."""
    from app.core.config import get_settings
    from app.core.db import Database
    from app.core.embedded import ensure_development_services

    async def main() -> T:
        ensure_development_services()
        settings = get_settings()
        database = Database(settings)
        try:
            return await use(database, settings)
        finally:
            await database.dispose()

    return asyncio.run(main())


@cli.command("list")
def list_entries(
    status: Annotated[
        OutboxStatus | None, typer.Option(help="only entries in this state")
    ] = OutboxStatus.DEAD,
    every: Annotated[bool, typer.Option("--all", help="entries in any state")] = False,
    limit: Annotated[int, typer.Option(help="newest first, at most this many")] = 50,
) -> None:
    """Count entries by state, then list them (dead ones by default)."""
    from app.core.outbox.repository import OutboxRepository

    async def use(database: Database, settings: Settings) -> None:
        repository = OutboxRepository()
        async with database.sessionmaker() as session:
            counts = await repository.counts(session)
            entries = await repository.list(session, status=None if every else status, limit=limit)
        typer.echo("  ".join(f"{state}: {counts.get(state, 0)}" for state in OutboxStatus))
        for entry in entries:
            error = (entry.last_error or "").splitlines()[0][:80] if entry.last_error else ""
            typer.echo(
                f"{entry.id:>8}  {entry.status:<7}  {entry.attempts:>2}x  "
                f"{entry.created_at:%Y-%m-%d %H:%M:%S}  {entry.task_name}  {error}".rstrip()
            )

    _run(use)


@cli.command()
def retry(
    ids: Annotated[list[int] | None, typer.Argument(help="entry ids", show_default=False)] = None,
    all_dead: Annotated[bool, typer.Option("--all-dead", help="every dead entry")] = False,
) -> None:
    """Give dead entries a new retry budget: the relays send them again now."""
    if not ids and not all_dead:
        raise typer.BadParameter("name entry ids, or --all-dead")
    from app.core.outbox.repository import OutboxRepository

    async def use(database: Database, settings: Settings) -> int:
        async with database.sessionmaker() as session:
            count = await OutboxRepository().retry(session, ids=None if all_dead else ids)
            await session.commit()
        return count

    typer.echo(f"{_run(use)} entries will be sent again")


@cli.command()
def discard(
    ids: Annotated[list[int], typer.Argument(help="entry ids", show_default=False)],
) -> None:
    """Delete dead entries: their work will not be done."""
    from app.core.outbox.repository import OutboxRepository

    async def use(database: Database, settings: Settings) -> int:
        async with database.sessionmaker() as session:
            count = await OutboxRepository().discard(session, ids=ids)
            await session.commit()
        return count

    typer.echo(f"{_run(use)} dead entries discarded")


@cli.command()
def relay() -> None:
    """Run a relay on its own (workers run one each unless OUTBOX_RELAY_IN_WORKER=false);
    stops on SIGTERM or Ctrl-C once its current pass is done."""
    from app.core.config import QueueBroker
    from app.core.outbox.relay import OutboxRelay
    from app.core.queue import worker  # every module's tasks, as a worker has them

    async def use(database: Database, settings: Settings) -> None:
        if settings.queue_broker is not QueueBroker.REDIS:
            typer.echo("a relay on its own needs QUEUE_BROKER=redis", err=True)
            raise typer.Exit(code=2)
        target = worker.broker
        target.configure(settings)
        await target.startup()
        relay = OutboxRelay(database, settings)
        loop = asyncio.get_running_loop()
        stopped = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopped.set)
        relay.start()
        typer.echo("relaying the outbox to the queue (Ctrl-C stops)")
        await stopped.wait()
        await relay.stop()
        await target.shutdown()

    _run(use)
