"""Queries on the outbox table, inside the caller's transaction (never committed here)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db.repository import rows_affected
from app.core.outbox.models import OutboxEntry, OutboxStatus

_ERROR_LENGTH = 2000


@dataclass(frozen=True)
class TakenEntry:
    """An entry a relay took for one attempt: what to send, and which attempt it is."""

    id: int
    task_name: str
    args: list[Any]
    kwargs: dict[str, Any]
    labels: dict[str, Any]
    attempt: int


class OutboxRepository:
    async def take_due(
        self, session: AsyncSession, *, limit: int, requeue_after: timedelta
    ) -> list[TakenEntry]:
        """Mark the oldest due entries queued for their next attempt and return them: pending
        ones whose time has come, and queued ones whose outcome never came (the queue lost
        them). Rows another relay holds are skipped, so concurrent relays never take the same
        entry. The caller commits before it sends them: no lock is held while the queue
        answers, and a worker that runs a task at once finds its entry queued."""
        due = (
            select(OutboxEntry.id)
            .where(
                or_(
                    and_(
                        OutboxEntry.status == OutboxStatus.PENDING,
                        OutboxEntry.available_at <= func.now(),
                    ),
                    and_(
                        OutboxEntry.status == OutboxStatus.QUEUED,
                        OutboxEntry.queued_at < func.now() - requeue_after,
                    ),
                )
            )
            .order_by(OutboxEntry.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        taken = await session.execute(
            update(OutboxEntry)
            .where(OutboxEntry.id.in_(due.scalar_subquery()))
            .values(
                status=OutboxStatus.QUEUED,
                attempts=OutboxEntry.attempts + 1,
                queued_at=func.now(),
                claimed_at=None,
            )
            .returning(
                OutboxEntry.id,
                OutboxEntry.task_name,
                OutboxEntry.args,
                OutboxEntry.kwargs,
                OutboxEntry.labels,
                OutboxEntry.attempts,
            )
            .execution_options(synchronize_session=False)
        )
        entries = [TakenEntry(*row) for row in taken]
        return sorted(entries, key=lambda entry: entry.id)

    async def put_back(self, session: AsyncSession, *, entries: Sequence[TakenEntry]) -> None:
        """Entries taken but not sent (the queue did not answer): pending again, the attempt
        not counted; unless a worker got one after all (the queue took it, then timed out)."""
        for entry in entries:
            await session.execute(
                update(OutboxEntry)
                .where(*self._still_queued(entry.id, entry.attempt))
                .where(OutboxEntry.claimed_at.is_(None))
                .values(
                    status=OutboxStatus.PENDING,
                    attempts=OutboxEntry.attempts - 1,
                    queued_at=None,
                )
                .execution_options(synchronize_session=False)
            )

    async def bury(self, session: AsyncSession, *, id: int, error: str) -> None:
        """An entry that will not be sent again: dead at once."""
        await session.execute(
            update(OutboxEntry)
            .where(OutboxEntry.id == id)
            .values(
                status=OutboxStatus.DEAD, last_error=error[:_ERROR_LENGTH], finished_at=func.now()
            )
            .execution_options(synchronize_session=False)
        )

    # --- the outcome of one attempt, from the process that ran it --------------------------
    # Each changes the entry only if the attempt is still the one it ran: a late duplicate
    # of an earlier attempt, or one an operator retried meanwhile, changes nothing.

    def _still_queued(self, id: int, attempt: int) -> tuple[ColumnElement[bool], ...]:
        return (
            OutboxEntry.id == id,
            OutboxEntry.attempts == attempt,
            OutboxEntry.status == OutboxStatus.QUEUED,
        )

    async def claim(
        self, session: AsyncSession, *, id: int, attempt: int, lease: timedelta
    ) -> bool:
        """Take the attempt for one delivery: false when another delivery of it holds it (its
        lease not run out) or it already has an outcome."""
        claimed = await session.execute(
            update(OutboxEntry)
            .where(
                *self._still_queued(id, attempt),
                or_(
                    OutboxEntry.claimed_at.is_(None),
                    OutboxEntry.claimed_at < func.now() - lease,
                ),
            )
            .values(claimed_at=func.now())
            .returning(OutboxEntry.id)
            .execution_options(synchronize_session=False)
        )
        return claimed.first() is not None

    async def succeed(self, session: AsyncSession, *, id: int, attempt: int) -> None:
        await session.execute(
            update(OutboxEntry)
            .where(*self._still_queued(id, attempt))
            .values(status=OutboxStatus.DONE, finished_at=func.now(), last_error=None)
            .execution_options(synchronize_session=False)
        )

    async def fail(
        self,
        session: AsyncSession,
        *,
        id: int,
        attempt: int,
        error: str,
        retry_in: timedelta | None,
    ) -> None:
        """Pending again after `retry_in`, or dead when there is no retry left (None)."""
        values: dict[str, Any] = {"last_error": error[:_ERROR_LENGTH], "queued_at": None}
        if retry_in is None:
            values.update(status=OutboxStatus.DEAD, finished_at=func.now())
        else:
            values.update(status=OutboxStatus.PENDING, available_at=func.now() + retry_in)
        await session.execute(
            update(OutboxEntry)
            .where(*self._still_queued(id, attempt))
            .values(**values)
            .execution_options(synchronize_session=False)
        )

    # --- operators (`app outbox`) and maintenance ------------------------------------------

    async def list(
        self, session: AsyncSession, *, status: OutboxStatus | None, limit: int
    ) -> Sequence[OutboxEntry]:
        query = select(OutboxEntry).order_by(OutboxEntry.id.desc()).limit(limit)
        if status is not None:
            query = query.where(OutboxEntry.status == status)
        return (await session.scalars(query)).all()

    async def counts(self, session: AsyncSession) -> dict[str, int]:
        rows = await session.execute(
            select(OutboxEntry.status, func.count()).group_by(OutboxEntry.status)
        )
        return {str(status): int(count) for status, count in rows}

    async def count_outstanding(self, session: AsyncSession) -> int:
        """Entries due now or waiting for their outcome."""
        return int(
            await session.scalar(
                select(func.count())
                .select_from(OutboxEntry)
                .where(
                    or_(
                        OutboxEntry.status == OutboxStatus.QUEUED,
                        and_(
                            OutboxEntry.status == OutboxStatus.PENDING,
                            OutboxEntry.available_at <= func.now(),
                        ),
                    )
                )
            )
            or 0
        )

    async def retry(self, session: AsyncSession, *, ids: Sequence[int] | None) -> int:
        """Dead entries (these, or all when `ids` is None) get a new budget, due now."""
        query = update(OutboxEntry).where(OutboxEntry.status == OutboxStatus.DEAD)
        if ids is not None:
            query = query.where(OutboxEntry.id.in_(ids))
        result = await session.execute(
            query.values(
                status=OutboxStatus.PENDING,
                attempts=0,
                available_at=func.now(),
                finished_at=None,
            ).execution_options(synchronize_session=False)
        )
        return rows_affected(result)

    async def discard(self, session: AsyncSession, *, ids: Sequence[int]) -> int:
        """Delete dead entries: their work will not be done."""
        result = await session.execute(
            delete(OutboxEntry)
            .where(OutboxEntry.id.in_(ids), OutboxEntry.status == OutboxStatus.DEAD)
            .execution_options(synchronize_session=False)
        )
        return rows_affected(result)

    async def purge_done(self, session: AsyncSession, *, older_than: timedelta) -> int:
        result = await session.execute(
            delete(OutboxEntry)
            .where(
                OutboxEntry.status == OutboxStatus.DONE,
                OutboxEntry.finished_at < func.now() - older_than,
            )
            .execution_options(synchronize_session=False)
        )
        return rows_affected(result)
