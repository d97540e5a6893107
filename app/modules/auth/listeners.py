"""Reactions to the users module's events: sessions end when a user is deleted or changes
their password. Queued (durable, retried); the worker's dependencies give the session."""

from __future__ import annotations

from typing import Annotated

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import get_session
from app.core.events import listener
from app.core.queue import TaskiqDepends
from app.modules.auth.config import load_auth_settings
from app.modules.auth.services import TokenMaintenance
from app.modules.users import UserDeleted, UserPasswordChanged


@listener(UserDeleted, queued=True)
async def end_sessions_of_deleted_user(
    event: UserDeleted, session: Annotated[AsyncSession, TaskiqDepends(get_session)]
) -> None:
    await TokenMaintenance(session, load_auth_settings()).revoke_user_sessions(
        user_id=event.user_id
    )


@listener(UserPasswordChanged, queued=True)
async def end_other_sessions_on_password_change(
    event: UserPasswordChanged, session: Annotated[AsyncSession, TaskiqDepends(get_session)]
) -> None:
    await TokenMaintenance(session, load_auth_settings()).revoke_user_sessions(
        user_id=event.user_id, keep_session_id=event.keep_session_id
    )
