"""Sign-in sessions: an account signed in somewhere, until when.

Core owns them because "who is calling" is core's: any module can check in its own read that
a principal's session is still live (`live_session`), or end an account's sessions inside its
own transaction (a password change ends the other sessions in the same commit). The auth
module starts them at sign-in and renews them when a refresh token is rotated.

A session ends when it is ended (logout, logout-all, a password change or reset, a reused
refresh token), `lifetime` after sign-in (absolute), or `idle` after its last renewal.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, DateTime, Uuid, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db.base import Base, UUIDPrimaryKeyMixin, utcnow
from app.core.db.repository import rows_affected


class SignInSession(UUIDPrimaryKeyMixin, Base):
    __tablename__ = "sign_in_sessions"

    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, server_default=func.now()
    )
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # absolute end
    idle_expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


def _is_live(session_id: Any, user_id: Any, now: Any) -> tuple[ColumnElement[bool], ...]:
    """The session is `user_id`'s, not ended, and before both its deadlines at `now`."""
    return (
        SignInSession.id == session_id,
        SignInSession.user_id == user_id,
        SignInSession.ended_at.is_(None),
        SignInSession.expires_at > now,
        SignInSession.idle_expires_at > now,
    )


def live_session(session_id: Any, user_id: Any, now: Any) -> ColumnElement[bool]:
    """A condition for a module's own read: the session is `user_id`'s and still live. One
    primary-key probe; the arguments are values, bound parameters or columns."""
    return select(SignInSession.id).where(*_is_live(session_id, user_id, now)).exists()


class SignInSessions:
    """Data access for sign-in sessions, inside the caller's unit of work. Never commits."""

    async def start(
        self,
        session: AsyncSession,
        *,
        user_id: uuid.UUID,
        lifetime: timedelta,
        idle: timedelta,
        now: datetime | None = None,
    ) -> SignInSession:
        now = now or utcnow()
        expires_at = now + lifetime
        started = SignInSession(
            id=uuid.uuid4(),
            user_id=user_id,
            created_at=now,
            expires_at=expires_at,
            idle_expires_at=min(now + idle, expires_at),
        )
        session.add(started)
        await session.flush()
        return started

    async def lock_live(
        self, session: AsyncSession, *, id: uuid.UUID, user_id: uuid.UUID, now: datetime
    ) -> SignInSession | None:
        """The live session, locked until the transaction ends: a concurrent end waits for
        this transaction, and this one, had it come second, sees the session ended (PostgreSQL
        checks the condition again on the row a waited-for transaction left)."""
        query = (
            select(SignInSession)
            .where(*_is_live(id, user_id, now))
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await session.execute(query)).scalar_one_or_none()

    def renew(self, signed_in: SignInSession, *, idle: timedelta, now: datetime) -> None:
        """Push the idle deadline forward; never past the absolute end."""
        signed_in.idle_expires_at = min(now + idle, signed_in.expires_at)

    async def end(
        self, session: AsyncSession, *, id: uuid.UUID, user_id: uuid.UUID, now: datetime
    ) -> int:
        result = await session.execute(
            update(SignInSession)
            .where(
                SignInSession.id == id,
                SignInSession.user_id == user_id,
                SignInSession.ended_at.is_(None),
            )
            .values(ended_at=now)
        )
        return rows_affected(result)

    async def end_all(
        self,
        session: AsyncSession,
        *,
        user_id: uuid.UUID,
        now: datetime,
        keep: uuid.UUID | None = None,
    ) -> int:
        """End every live session of the account, but `keep` (the one making the change)."""
        query = update(SignInSession).where(
            SignInSession.user_id == user_id, SignInSession.ended_at.is_(None)
        )
        if keep is not None:
            query = query.where(SignInSession.id != keep)
        result = await session.execute(query.values(ended_at=now))
        return rows_affected(result)

    async def purge(self, session: AsyncSession, *, before: datetime) -> int:
        """Delete sessions that ended, or ran out, before `before`."""
        result = await session.execute(
            delete(SignInSession).where(
                or_(
                    SignInSession.ended_at < before,
                    SignInSession.expires_at < before,
                    SignInSession.idle_expires_at < before,
                )
            )
        )
        return rows_affected(result)
