"""Periodic clean-up of ended sessions and spent tokens (sent by `app scheduler`). Account mail
is sent by `mail.send_account_mail`."""

from __future__ import annotations

from typing import Annotated

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import get_session
from app.core.queue import TaskiqDepends, broker
from app.modules.auth.config import load_auth_settings
from app.modules.auth.services import TokenMaintenance


@broker.task(task_name="auth.purge_expired_tokens", schedule=[{"cron": "17 * * * *"}])
async def purge_expired_tokens(
    session: Annotated[AsyncSession, TaskiqDepends(get_session)],
) -> int:
    refresh, action = await TokenMaintenance(session, load_auth_settings()).purge_expired()
    return refresh + action
