"""Token maintenance: the periodic purge of ended sessions and spent tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import utcnow
from app.core.queue import broker, send_due_tasks
from app.core.sessions import SignInSession
from app.modules.auth.models import ActionToken, RefreshToken, TokenPurpose
from app.modules.auth.tasks import purge_expired_tokens
from app.modules.users.models import User
from tests.factories.auth import ActionTokenFactory, RefreshTokenFactory, SignInSessionFactory


async def test_purge_task_deletes_only_stale_sessions_and_tokens(
    session: AsyncSession, user: User
) -> None:
    long_ago = utcnow() - timedelta(days=30)
    live = SignInSessionFactory.build(user_id=user.id)
    ended = SignInSessionFactory.build(user_id=user.id, ended_at=long_ago)
    session.add_all([live, ended])
    await session.flush()
    session.add_all(
        [
            RefreshTokenFactory.build(user_id=user.id, session_id=live.id),
            RefreshTokenFactory.build(user_id=user.id, session_id=live.id, expires_at=long_ago),
            RefreshTokenFactory.build(user_id=user.id, session_id=live.id, rotated_at=long_ago),
            RefreshTokenFactory.build(user_id=user.id, session_id=ended.id),  # goes with it
            ActionTokenFactory.build(user_id=user.id, expires_at=long_ago),
            ActionTokenFactory.build(user_id=user.id, purpose=TokenPurpose.RESET_PASSWORD.value),
        ]
    )
    await session.commit()

    task = await purge_expired_tokens.kiq()  # type: ignore[call-overload]
    await broker.wait_all()
    result = await task.wait_result(timeout=5)
    assert result.return_value == 3  # two stale refresh tokens, one action token

    session.expire_all()
    assert await session.scalar(select(func.count()).select_from(SignInSession)) == 1
    assert await session.scalar(select(func.count()).select_from(RefreshToken)) == 1
    assert await session.scalar(select(func.count()).select_from(ActionToken)) == 1


async def test_the_purge_is_scheduled_hourly(session: AsyncSession) -> None:
    at_17 = datetime(2030, 1, 1, 5, 17, tzinfo=UTC)
    assert "auth.purge_expired_tokens" in await send_due_tasks(now=at_17)
    await broker.wait_all()
    assert "auth.purge_expired_tokens" not in await send_due_tasks(now=at_17.replace(minute=18))
