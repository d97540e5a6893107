"""Data access for refresh and action tokens. Never commits."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime

from sqlalchemy import bindparam, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.modules.auth.models import ActionToken, RefreshToken, TokenPurpose


def user_lock_key(user_id: uuid.UUID) -> int:
    """A stable signed 64-bit key for `pg_advisory_xact_lock`, per user (namespaced, so it
    does not collide with other advisory locks keyed on ids)."""
    digest = hashlib.blake2b(b"auth.sessions:" + user_id.bytes, digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


# Whether a sign-in session still has its live head token: one probe of the partial index
# `ix_auth_refresh_tokens_live_family`. One statement, compiled once and prepared by psycopg.
_LIVE_SESSION = select(
    select(RefreshToken.id)
    .where(
        RefreshToken.family_id == bindparam("family_id"),
        RefreshToken.revoked_at.is_(None),
        RefreshToken.rotated_at.is_(None),
        RefreshToken.user_id == bindparam("user_id"),
        RefreshToken.expires_at > bindparam("now"),
    )
    .exists()
)


class RefreshTokenRepository:
    async def lock_user(self, session: AsyncSession, *, user_id: uuid.UUID) -> None:
        """Serialise the user's session changes until this transaction ends: a refresh that
        inserts a new token and a revocation of the user's tokens never interleave, so a
        revocation cannot miss a token inserted concurrently."""
        await session.execute(select(func.pg_advisory_xact_lock(user_lock_key(user_id))))

    async def session_is_live(
        self,
        connection: AsyncConnection,
        *,
        family_id: uuid.UUID,
        user_id: uuid.UUID,
        now: datetime,
    ) -> bool:
        """Whether the sign-in session (refresh token family) of `user_id` still has its
        unrevoked, unexpired head token; read outside any unit of work."""
        result = await connection.execute(
            _LIVE_SESSION, {"family_id": family_id, "user_id": user_id, "now": now}
        )
        return bool(result.scalar())

    async def add(self, session: AsyncSession, token: RefreshToken) -> RefreshToken:
        session.add(token)
        await session.flush()
        return token

    async def get_by_hash(self, session: AsyncSession, *, token_hash: str) -> RefreshToken | None:
        """Unlocked: lock the row with `get_for_rotation` after `lock_user` (the other order
        could deadlock with a revocation)."""
        query = select(RefreshToken).where(RefreshToken.token_hash == token_hash)
        return (await session.execute(query)).scalar_one_or_none()

    async def get_for_rotation(
        self, session: AsyncSession, *, token_id: uuid.UUID
    ) -> RefreshToken | None:
        """The row again, locked and freshly read (after `lock_user`: a revocation that
        committed meanwhile is seen)."""
        query = (
            select(RefreshToken)
            .where(RefreshToken.id == token_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await session.execute(query)).scalar_one_or_none()

    async def revoke_family(
        self, session: AsyncSession, *, family_id: uuid.UUID, user_id: uuid.UUID, now: datetime
    ) -> int:
        await self.lock_user(session, user_id=user_id)
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
        await self.lock_user(session, user_id=user_id)
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
