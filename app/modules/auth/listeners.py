"""Reactions of the auth module to other modules' events."""

from __future__ import annotations

from app.core.db import Database, get_database
from app.core.events import listener
from app.core.mail import MailService, get_mailer
from app.core.outbox import RunOnce
from app.core.queue import TaskiqDepends
from app.core.ratelimit import RateLimiter, get_rate_limiter
from app.modules.auth.api_keys.service import ApiKeyService
from app.modules.auth.config import AuthSettings, get_auth_settings
from app.modules.auth.mail import AccountMail, send_account_mail_now
from app.modules.users import UserPasswordChanged, UserRegistered


@listener(UserRegistered, queued=True)
async def mail_verification_link(
    event: UserRegistered,
    once: RunOnce = None,
    database: Database = TaskiqDepends(get_database),
    settings: AuthSettings = TaskiqDepends(get_auth_settings),
    mailer: MailService = TaskiqDepends(get_mailer),
    limiter: RateLimiter = TaskiqDepends(get_rate_limiter),
) -> None:
    """A new account's verification link: queued with the account itself, in the transaction
    that creates it (an account already verified, made by an administrator, gets none)."""
    await send_account_mail_now(
        AccountMail.VERIFY_EMAIL,
        event.email,
        database=database,
        settings=settings,
        mailer=mailer,
        limiter=limiter,
        delivery=once,
    )


@listener(UserPasswordChanged, queued=True)
async def revoke_api_keys(
    event: UserPasswordChanged, database: Database = TaskiqDepends(get_database)
) -> None:
    """A changed or reset password may mean the account was taken over: the keys whoever held
    it made stop working too (a reset revokes them in its own transaction already)."""
    async with database.sessionmaker() as session:
        await ApiKeyService(session).revoke_all(user_id=event.user_id)
        await session.commit()
