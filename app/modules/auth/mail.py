"""The mail the auth module sends about an account, prepared where it is sent (a worker).

A request only names the kind and the address (`AccountMail`, an email address), through the
outbox: whether an account exists, whether the address's mail budget allows another mail, and
the single-use token of its link, are decided here. So requests answer alike for any address,
and no raw token is written to the outbox or the queue.
"""

from __future__ import annotations

import enum
from datetime import timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import Database, get_database, release_connection, utcnow
from app.core.mail import MailService, get_mailer
from app.core.outbox import OutboxDelivery, RunOnce
from app.core.queue import TaskiqDepends, broker
from app.core.ratelimit import RateLimiter, get_rate_limiter
from app.core.security import hash_token, new_opaque_token
from app.modules.auth.config import AuthSettings, get_auth_settings
from app.modules.auth.models import ActionToken, TokenPurpose
from app.modules.auth.repositories import ActionTokenRepository
from app.modules.users import UserDTO, UsersGateway

log = structlog.get_logger("app.auth")


class AccountMail(enum.StrEnum):
    VERIFY_EMAIL = "verify_email"  # a link that confirms the address
    RESET_PASSWORD = "reset_password"  # a link that sets a new password  # noqa: S105
    REGISTRATION_ATTEMPT = "registration_attempt"  # someone registered with a taken address


class AccountMailer:
    def __init__(
        self,
        *,
        session: AsyncSession,
        settings: AuthSettings,
        mailer: MailService,
        limiter: RateLimiter,
    ) -> None:
        self.session = session
        self.settings = settings
        self.mailer = mailer
        self.limiter = limiter
        self.users = UsersGateway(session)
        self.action_tokens = ActionTokenRepository()

    async def send(self, kind: AccountMail, email: str, *, retry: bool = False) -> None:
        """At most AUTH_EMAIL_RATE_LIMIT mails per address; beyond it nothing is sent (links
        mailed earlier keep working). A retry of a mail that failed was counted already."""
        budget = await self.limiter.peek_hit(
            key=hash_token(email.lower()),
            limit=self.settings.email_rate_limit,
            scope="auth.mail",
            cost=0 if retry else 1,
        )
        if not budget.allowed:
            log.info("account_mail_not_sent", kind=kind.value, reason="address budget spent")
            return
        user = await self.users.get_by_email(email)
        await release_connection(self.session)  # no connection held while SMTP answers
        if user is None or not user.is_active:
            log.info("account_mail_not_sent", kind=kind.value, reason="no active account")
            return
        if kind is AccountMail.VERIFY_EMAIL:
            if user.is_verified:
                return
            hours = self.settings.verify_email_ttl_hours
            link = await self._link(user, TokenPurpose.VERIFY_EMAIL, timedelta(hours=hours))
            await self._send(user, "auth/verify_email", link=link, ttl_hours=hours)
        elif kind is AccountMail.RESET_PASSWORD:
            minutes = self.settings.password_reset_ttl_minutes
            link = await self._link(user, TokenPurpose.RESET_PASSWORD, timedelta(minutes=minutes))
            await self._send(user, "auth/reset_password", link=link, ttl_minutes=minutes)
        else:
            await self._send(user, "auth/registration_attempt", link=self._url("/password-reset"))

    async def _link(self, user: UserDTO, purpose: TokenPurpose, ttl: timedelta) -> str:
        """A new single-use token for the account at its current address, stored as its hash
        (links mailed earlier stay valid until used or expired), as a link to the frontend."""
        raw = new_opaque_token()
        await self.action_tokens.add(
            self.session,
            ActionToken(
                user_id=user.id,
                purpose=purpose.value,
                email=user.email,
                token_hash=hash_token(raw),
                expires_at=utcnow() + ttl,
            ),
        )
        await self.session.commit()
        page = "/verify-email" if purpose is TokenPurpose.VERIFY_EMAIL else "/reset-password"
        # In the fragment: a browser sends it to no server, Referer and access logs included.
        return f"{self._url(page)}#token={raw}"

    def _url(self, page: str) -> str:
        return f"{self.settings.frontend_url}{page}"

    async def _send(self, user: UserDTO, template: str, **context: object) -> None:
        await self.mailer.send_template(
            to=user.email, template=template, context={"username": user.username, **context}
        )


async def send_account_mail_now(
    kind: AccountMail,
    email: str,
    *,
    database: Database,
    settings: AuthSettings,
    mailer: MailService,
    limiter: RateLimiter,
    delivery: OutboxDelivery | None = None,
) -> None:
    async with database.sessionmaker() as session:
        account_mailer = AccountMailer(
            session=session, settings=settings, mailer=mailer, limiter=limiter
        )
        await account_mailer.send(kind, email, retry=delivery is not None and delivery.attempt > 1)


@broker.task(task_name="auth.send_account_mail")
async def send_account_mail(
    kind: str,
    email: str,
    once: RunOnce = None,
    database: Database = TaskiqDepends(get_database),
    settings: AuthSettings = TaskiqDepends(get_auth_settings),
    mailer: MailService = TaskiqDepends(get_mailer),
    limiter: RateLimiter = TaskiqDepends(get_rate_limiter),
) -> None:
    """Queued through the outbox, sent once per entry; retried on SMTP failure (a retry makes
    a new link, the first one stays valid)."""
    await send_account_mail_now(
        AccountMail(kind),
        email,
        database=database,
        settings=settings,
        mailer=mailer,
        limiter=limiter,
        delivery=once,
    )
