"""Token maintenance: the periodic purge, revocation listeners."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import utcnow
from app.core.queue import broker, send_due_tasks
from app.modules.auth.models import ActionToken, RefreshToken, TokenPurpose
from app.modules.auth.tasks import purge_expired_tokens
from app.modules.users.models import User
from tests.factories.auth import ActionTokenFactory, RefreshTokenFactory


async def test_purge_task_deletes_only_stale_tokens(session: AsyncSession, user: User) -> None:
    long_ago = utcnow() - timedelta(days=30)
    session.add_all(
        [
            RefreshTokenFactory.build(user_id=user.id),
            RefreshTokenFactory.build(user_id=user.id, expires_at=long_ago),
            RefreshTokenFactory.build(user_id=user.id, revoked_at=long_ago),
            ActionTokenFactory.build(user_id=user.id, expires_at=long_ago),
            ActionTokenFactory.build(user_id=user.id, purpose=TokenPurpose.RESET_PASSWORD.value),
        ]
    )
    await session.commit()

    task = await purge_expired_tokens.kiq()  # type: ignore[call-overload]
    await broker.wait_all()
    result = await task.wait_result(timeout=5)
    assert result.return_value == 3

    session.expire_all()
    assert await session.scalar(select(func.count()).select_from(RefreshToken)) == 1
    assert await session.scalar(select(func.count()).select_from(ActionToken)) == 1


async def test_the_purge_is_scheduled_hourly(session: AsyncSession) -> None:
    at_17 = datetime(2030, 1, 1, 5, 17, tzinfo=UTC)
    assert "auth.purge_expired_tokens" in await send_due_tasks(now=at_17)
    await broker.wait_all()
    assert "auth.purge_expired_tokens" not in await send_due_tasks(now=at_17.replace(minute=18))
