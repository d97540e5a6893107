"""Data access for TOTP secrets and recovery codes. Never commits."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.core.db import rows_affected
from app.modules.auth.two_factor.models import RecoveryCode, TwoFactor


class TwoFactorRepository:
    async def get(self, session: AsyncSession, *, user_id: uuid.UUID) -> TwoFactor | None:
        return await session.get(TwoFactor, user_id)

    async def lock(self, session: AsyncSession, *, user_id: uuid.UUID) -> TwoFactor | None:
        """Locked and freshly read: of two requests using the same code, the second sees the
        step the first accepted."""
        query = (
            select(TwoFactor)
            .where(TwoFactor.user_id == user_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await session.execute(query)).scalar_one_or_none()

    async def is_enabled(
        self, session: AsyncSession | AsyncConnection, *, user_id: uuid.UUID
    ) -> bool:
        """On a session, or on a connection (the API key check's own)."""
        query = select(TwoFactor.user_id).where(
            TwoFactor.user_id == user_id, TwoFactor.confirmed_at.is_not(None)
        )
        return (await session.execute(query)).first() is not None

    async def add(self, session: AsyncSession, row: TwoFactor) -> None:
        session.add(row)
        await session.flush()

    async def remove(self, session: AsyncSession, *, user_id: uuid.UUID) -> None:
        await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
        await session.execute(delete(TwoFactor).where(TwoFactor.user_id == user_id))


class RecoveryCodeRepository:
    async def replace(
        self, session: AsyncSession, *, user_id: uuid.UUID, hashes: list[str]
    ) -> None:
        await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
        session.add_all(RecoveryCode(user_id=user_id, code_hash=h) for h in hashes)
        await session.flush()

    async def use(
        self, session: AsyncSession, *, user_id: uuid.UUID, code_hash: str, now: datetime
    ) -> bool:
        """Spend the code if it is this account's and unused; one UPDATE, so two requests
        presenting it at once cannot both spend it."""
        result = await session.execute(
            update(RecoveryCode)
            .where(
                RecoveryCode.user_id == user_id,
                RecoveryCode.code_hash == code_hash,
                RecoveryCode.used_at.is_(None),
            )
            .values(used_at=now)
        )
        return rows_affected(result) == 1

    async def count_unused(self, session: AsyncSession, *, user_id: uuid.UUID) -> int:
        query = select(func.count()).where(
            RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None)
        )
        return int((await session.execute(query)).scalar_one())
