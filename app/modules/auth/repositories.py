"""Data access for refresh and action tokens. Never commits."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import rows_affected
from app.modules.auth.models import ActionToken, RefreshToken, TokenPurpose


class RefreshTokenRepository:
    async def add(self, session: AsyncSession, token: RefreshToken) -> RefreshToken:
        session.add(token)
        await session.flush()
        return token

    async def get_by_hash(self, session: AsyncSession, *, token_hash: str) -> RefreshToken | None:
        """Unlocked: lock its sign-in session first, then the token (`get_for_rotation`)."""
        query = select(RefreshToken).where(RefreshToken.token_hash == token_hash)
        return (await session.execute(query)).scalar_one_or_none()

    async def get_for_rotation(
        self, session: AsyncSession, *, token_id: uuid.UUID
    ) -> RefreshToken | None:
        """The row again, locked and freshly read: of two requests presenting it at once, the
        second sees it rotated."""
        query = (
            select(RefreshToken)
            .where(RefreshToken.id == token_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await session.execute(query)).scalar_one_or_none()

    async def purge(self, session: AsyncSession, *, before: datetime) -> int:
        """Delete tokens that expired, or were rotated, before `before` (the tokens of purged
        sessions go with them)."""
        result = await session.execute(
            delete(RefreshToken).where(
                or_(RefreshToken.expires_at < before, RefreshToken.rotated_at < before)
            )
        )
        return rows_affected(result)


class ActionTokenRepository:
    async def add(self, session: AsyncSession, token: ActionToken) -> ActionToken:
        session.add(token)
        await session.flush()
        return token

    async def get_by_hash(
        self, session: AsyncSession, *, purpose: TokenPurpose, token_hash: str
    ) -> ActionToken | None:
        query = select(ActionToken).where(
            ActionToken.token_hash == token_hash, ActionToken.purpose == purpose.value
        )
        return (await session.execute(query)).scalar_one_or_none()

    async def lock(self, session: AsyncSession, *, token_id: uuid.UUID) -> ActionToken | None:
        """The token again, locked until the transaction ends and freshly read: of two
        requests spending it at once, the second sees it used."""
        query = (
            select(ActionToken)
            .where(ActionToken.id == token_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await session.execute(query)).scalar_one_or_none()

    async def use_all(
        self, session: AsyncSession, *, user_id: uuid.UUID, purpose: TokenPurpose, now: datetime
    ) -> None:
        """Mark every outstanding token of this purpose used."""
        await session.execute(
            update(ActionToken)
            .where(
                ActionToken.user_id == user_id,
                ActionToken.purpose == purpose.value,
                ActionToken.used_at.is_(None),
            )
            .values(used_at=now)
        )

    async def purge(self, session: AsyncSession, *, before: datetime) -> int:
        result = await session.execute(
            delete(ActionToken).where(
                or_(ActionToken.expires_at < before, ActionToken.used_at < before)
            )
        )
        return rows_affected(result)
