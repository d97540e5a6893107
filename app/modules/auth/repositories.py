"""Data access for refresh and action tokens. Never commits."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.modules.auth.models import ActionToken, RefreshToken, TokenPurpose


class RefreshTokenRepository:
    async def add(self, session: AsyncSession, token: RefreshToken) -> RefreshToken:
        session.add(token)
        await session.flush()
        return token

    async def get_by_hash(
        self, session: AsyncSession, *, token_hash: str, for_update: bool = True
    ) -> RefreshToken | None:
        query = select(RefreshToken).where(RefreshToken.token_hash == token_hash)
        if for_update:
            query = query.with_for_update()
        return (await session.execute(query)).scalar_one_or_none()

    async def revoke_family(
        self, session: AsyncSession, *, family_id: uuid.UUID, user_id: uuid.UUID, now: datetime
    ) -> int:
        result = await session.execute(
            update(RefreshToken)
            .where(
                RefreshToken.family_id == family_id,
                RefreshToken.user_id == user_id,
                RefreshToken.revoked_at.is_(None),
            )
            .values(revoked_at=now)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    async def revoke_user(
        self,
        session: AsyncSession,
        *,
        user_id: uuid.UUID,
        now: datetime,
        keep_family_id: uuid.UUID | None = None,
    ) -> int:
        query = update(RefreshToken).where(
            RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None)
        )
        if keep_family_id is not None:
            query = query.where(RefreshToken.family_id != keep_family_id)
        result = await session.execute(query.values(revoked_at=now))
        return int(getattr(result, "rowcount", 0) or 0)

    async def purge(self, session: AsyncSession, *, before: datetime) -> int:
        """Delete tokens that expired, or were revoked, before `before`."""
        result = await session.execute(
            delete(RefreshToken).where(
                or_(RefreshToken.expires_at < before, RefreshToken.revoked_at < before)
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)


class ActionTokenRepository:
    async def add(self, session: AsyncSession, token: ActionToken) -> ActionToken:
        session.add(token)
        await session.flush()
        return token

    async def get_by_hash(
        self, session: AsyncSession, *, purpose: TokenPurpose, token_hash: str
    ) -> ActionToken | None:
        query = (
            select(ActionToken)
            .where(ActionToken.token_hash == token_hash, ActionToken.purpose == purpose.value)
            .with_for_update()
        )
        return (await session.execute(query)).scalar_one_or_none()

    async def use_all(
        self, session: AsyncSession, *, user_id: uuid.UUID, purpose: TokenPurpose, now: datetime
    ) -> None:
        """Mark every outstanding token of this purpose used: only the newest one counts."""
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
        return int(getattr(result, "rowcount", 0) or 0)
