"""Data access for API keys. Never commits."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import RowMapping, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.core.db import BaseRepository, rows_affected
from app.modules.auth.api_keys.models import ApiKey

# Last use is recorded at most this often per key: a busy key is not a write per request.
LAST_USED_PRECISION = timedelta(minutes=1)

# A key that may be used at `now`: by its lookup prefix, not revoked, not expired. One unique
# index probe, compiled once.
_USABLE = select(
    ApiKey.id, ApiKey.user_id, ApiKey.key_hash, ApiKey.scopes, ApiKey.last_used_at
).where(
    ApiKey.lookup == bindparam("lookup"),
    ApiKey.revoked_at.is_(None),
    ApiKey.expires_at > bindparam("now"),
)
_TOUCH = (
    update(ApiKey)
    .where(
        ApiKey.id == bindparam("key_id"),
        or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < bindparam("stale_before")),
    )
    .values(last_used_at=bindparam("now"))
)


class ApiKeyRepository(BaseRepository[ApiKey]):
    model = ApiKey
    not_found_message = "API key not found"

    async def read_usable(
        self, connection: AsyncConnection, *, lookup: str, now: datetime
    ) -> RowMapping | None:
        result = await connection.execute(_USABLE, {"lookup": lookup, "now": now})
        return result.mappings().first()

    async def touch(self, connection: AsyncConnection, *, key_id: uuid.UUID, now: datetime) -> None:
        """Record a use, unless one was recorded within LAST_USED_PRECISION."""
        await connection.execute(
            _TOUCH, {"key_id": key_id, "now": now, "stale_before": now - LAST_USED_PRECISION}
        )

    async def count_live(self, session: AsyncSession, *, user_id: uuid.UUID, now: datetime) -> int:
        count = await session.scalar(
            select(func.count())
            .select_from(ApiKey)
            .where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None), ApiKey.expires_at > now)
        )
        return int(count or 0)

    async def revoke(
        self, session: AsyncSession, *, key_id: uuid.UUID, user_id: uuid.UUID, now: datetime
    ) -> bool:
        """Revoke the user's key; False when it is not theirs or already revoked."""
        result = await session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return rows_affected(result) == 1

    async def revoke_all(self, session: AsyncSession, *, user_id: uuid.UUID, now: datetime) -> int:
        """Revoke every key of the user that is not revoked yet; how many."""
        result = await session.execute(
            update(ApiKey)
            .where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return rows_affected(result)
