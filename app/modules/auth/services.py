"""Use cases of the auth module: registration, sign-in, sign-in sessions and their refresh
tokens, email verification, password reset. Services own the unit of work; the users module
is reached only through its gateway, and sessions are core's (`app.core.sessions`).

Mail that carries a link is sent by a task that looks the account up and makes the link's
token itself (`mail.send_account_mail`): a request answers alike for any address, and no raw
token travels through the queue.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.csrf import csrf_valid
from app.core.db import utcnow
from app.core.errors import AppError, Forbidden, Unauthorized
from app.core.outbox import enqueue
from app.core.ratelimit import RateLimiter
from app.core.security import encode_jwt, hash_token, new_opaque_token
from app.core.sessions import SignInSession, SignInSessions
from app.modules.auth.api_keys.service import ApiKeyService
from app.modules.auth.authenticator import ACCESS_TOKEN_TYPE
from app.modules.auth.config import AuthSettings
from app.modules.auth.mail import AccountMail, send_account_mail
from app.modules.auth.models import ActionToken, RefreshToken, TokenPurpose
from app.modules.auth.repositories import ActionTokenRepository, RefreshTokenRepository
from app.modules.auth.schemas import RegisterIn, TokenPair
from app.modules.auth.two_factor.schemas import SecondFactorRequired
from app.modules.auth.two_factor.services import TwoFactorService
from app.modules.users import EmailTaken, UserCreate, UserDTO, UsersGateway

log = structlog.get_logger("app.auth")
security_log = structlog.get_logger("app.security")


class InvalidActionToken(AppError):
    status_code = 400
    title = "Invalid Token"


INVALID_CREDENTIALS = "Incorrect username/email or password"
INVALID_LINK = "This link is invalid, expired or already used"
MAX_LOGIN_LENGTH = 320
MAX_PASSWORD_LENGTH = 128  # as at registration: no longer password can be right


def _spendable(token: ActionToken, now: datetime) -> bool:
    """Not used yet, and not expired at `now`."""
    return token.used_at is None and token.expires_at > now


class TokenMaintenance:
    """Clean-up, usable outside a request (the scheduled purge)."""

    def __init__(self, session: AsyncSession, settings: AuthSettings) -> None:
        self.session = session
        self.settings = settings
        self.refresh_tokens = RefreshTokenRepository()
        self.action_tokens = ActionTokenRepository()
        self.sessions = SignInSessions()

    async def purge_expired(self) -> tuple[int, int]:
        """Sessions (their refresh tokens with them), tokens and links that ended more than
        AUTH_TOKEN_RETENTION_DAYS ago."""
        before = utcnow() - timedelta(days=self.settings.token_retention_days)
        sessions = await self.sessions.purge(self.session, before=before)
        refresh = await self.refresh_tokens.purge(self.session, before=before)
        action = await self.action_tokens.purge(self.session, before=before)
        await self.session.commit()
        log.info(
            "auth_tokens_purged", sessions=sessions, refresh_tokens=refresh, action_tokens=action
        )
        return refresh, action


class AuthService:
    def __init__(
        self,
        *,
        session: AsyncSession,
        settings: AuthSettings,
        secret_key: str,
        users: UsersGateway,
        limiter: RateLimiter,
        two_factor: TwoFactorService,
    ) -> None:
        self.session = session
        self.two_factor = two_factor
        self.settings = settings
        self.secret_key = secret_key
        self.users = users
        self.limiter = limiter
        self.refresh_tokens = RefreshTokenRepository()
        self.action_tokens = ActionTokenRepository()
        self.sessions = SignInSessions()

    # --- registration and verification -----------------------------------------------------

    async def register(self, data: RegisterIn, *, client: str) -> None:
        """The same answer whether the address is new or taken: a new one gets an account and
        a verification link (the auth module's listener of `UserRegistered`, queued with the
        account in one transaction), a taken one a note to its owner. A taken username is a
        409."""
        await self.limiter.hit(
            key=client, limit=self.settings.register_rate_limit_ip, scope="auth.register.ip"
        )
        create = UserCreate(email=data.email, username=data.username, password=data.password)
        try:
            await self.users.create(create)
        except EmailTaken:
            # The account creation hashed the password before it found the address taken, so
            # both answers take the same time.
            security_log.info("registration_with_taken_email", security_event=True)
            await self._queue_mail(AccountMail.REGISTRATION_ATTEMPT, data.email)

    async def _queue_mail(self, kind: AccountMail, email: str) -> None:
        """Through the outbox: the worker decides whether there is an account to mail and
        whether the address's mail budget allows it (`mail.AccountMailer`)."""
        enqueue(self.session, send_account_mail, kind.value, email)
        await self.session.commit()

    async def request_mail(self, kind: AccountMail, *, email: str, client: str) -> None:
        """Resend a verification link or send a reset link: budgeted per client first (one
        client cannot spend an address's budget), the same answer and the same work for any
        address (the task decides whether there is an account to mail)."""
        await self.limiter.hit(
            key=client, limit=self.settings.email_rate_limit, scope=f"auth.mail.{kind.value}"
        )
        await self._queue_mail(kind, email)

    async def _usable(self, *, token: str, purpose: TokenPurpose) -> tuple[ActionToken, UserDTO]:
        """The token, unused and unexpired, with its live user, who must still have the address
        the token was mailed to (case aside): else a 400, the same for every reason."""
        row = await self.action_tokens.get_by_hash(
            self.session, purpose=purpose, token_hash=hash_token(token)
        )
        if row is None or not _spendable(row, utcnow()):
            raise InvalidActionToken(INVALID_LINK)
        user = await self.users.get_by_id(row.user_id)
        if user is None or user.email.lower() != row.email.lower():
            raise InvalidActionToken(INVALID_LINK)
        return row, user

    async def _spend(self, row: ActionToken) -> None:
        """Mark the token used, locked first: a concurrent request that spent it wins. The
        other outstanding tokens of the purpose are spent with it."""
        locked = await self.action_tokens.lock(self.session, token_id=row.id)
        now = utcnow()
        if locked is None or not _spendable(locked, now):
            raise InvalidActionToken(INVALID_LINK)
        await self.action_tokens.use_all(
            self.session, user_id=locked.user_id, purpose=TokenPurpose(locked.purpose), now=now
        )

    async def verify_email(self, *, token: str) -> None:
        """Spend the token and mark the address verified in one transaction, and only if the
        account still has the address the token was mailed to."""
        row, _ = await self._usable(token=token, purpose=TokenPurpose.VERIFY_EMAIL)
        await self._spend(row)
        if not await self.users.mark_verified(row.user_id, row.email):
            raise InvalidActionToken(INVALID_LINK)  # the address changed meanwhile
        await self.session.commit()
        log.info("email_verified", user_id=str(row.user_id))

    # --- sign-in and sessions --------------------------------------------------------------

    async def login(
        self, *, login: str, password: str, client: str
    ) -> TokenPair | SecondFactorRequired:
        await self.limiter.hit(
            key=client, limit=self.settings.login_rate_limit_ip, scope="auth.login.ip"
        )
        if len(login) > MAX_LOGIN_LENGTH or len(password) > MAX_PASSWORD_LENGTH:
            raise Unauthorized(INVALID_CREDENTIALS)
        user = await self.users.sign_in(login, password, client=client)
        if user is None or not user.is_active:
            # The account named, as typed (the users module's `password_check_failed` has its
            # id when it exists); never the password.
            security_log.warning("sign_in_failed", security_event=True, login=login, client=client)
            raise Unauthorized(INVALID_CREDENTIALS)
        if not user.is_verified and not self.settings.unverified_login_allowed:
            raise Forbidden("Verify your email address before signing in")
        return await self.second_step_or_sign_in(user)

    async def second_step_or_sign_in(self, user: UserDTO) -> TokenPair | SecondFactorRequired:
        """The challenge of a second step when the account needs one (two-factor), else the
        tokens: every first factor (password, provider) ends here."""
        pending = await self.two_factor.pending_for(user)
        if pending is not None:
            return pending
        return await self.sign_in(user)

    async def sign_in(self, user: UserDTO) -> TokenPair:
        """A new sign-in session and its tokens for an account whose credentials were checked
        (outside any transaction, as argon2 is slow): the session starts only if the account
        did not change meanwhile (a reset, a deactivation)."""
        if not await self.users.hold_unchanged(user):
            raise Unauthorized(INVALID_CREDENTIALS)
        now = utcnow()
        signed_in = await self.sessions.start(
            self.session,
            user_id=user.id,
            lifetime=self.settings.session_lifetime,
            idle=self.settings.session_idle_timeout,
            now=now,
        )
        pair = await self._issue(user, signed_in, now=now)
        log.info("login", user_id=str(user.id))
        return pair

    async def _issue(self, user: UserDTO, signed_in: SignInSession, *, now: datetime) -> TokenPair:
        """A refresh token of the session, good until the session's next deadline at most, and
        an access token for it; committed with whatever the caller changed."""
        refresh_expires = min(
            now + timedelta(days=self.settings.refresh_token_ttl_days),
            signed_in.idle_expires_at,
        )
        raw = new_opaque_token()
        await self.refresh_tokens.add(
            self.session,
            RefreshToken(
                user_id=user.id,
                session_id=signed_in.id,
                token_hash=hash_token(raw),
                expires_at=refresh_expires,
            ),
        )
        await self.session.commit()
        access = encode_jwt(
            {
                "sub": str(user.id),
                "role": str(user.role),
                "sid": str(signed_in.id),
                "typ": ACCESS_TOKEN_TYPE,
            },
            key=self.secret_key,
            issuer=self.settings.jwt_issuer,
            audience=self.settings.jwt_audience,
            ttl=timedelta(seconds=self.settings.access_token_ttl_seconds),
            now=now,
        )
        return TokenPair(
            access_token=access,
            expires_in=self.settings.access_token_ttl_seconds,
            refresh_token=raw,
            refresh_expires_in=max(0, int((refresh_expires - now).total_seconds())),
        )

    async def refresh(self, *, refresh_token: str, csrf_token: str | None = None) -> TokenPair:
        """Rotate: the presented token is spent, a new one of the same session issued and the
        session's idle deadline pushed forward (never past its absolute end). A token that
        was already rotated means it leaked: the whole session ends. A refresh token that came
        in a cookie comes with `csrf_token`, which must be signed for its session (else 403)."""
        invalid = Unauthorized("Invalid or expired refresh token")
        found = await self.refresh_tokens.get_by_hash(
            self.session, token_hash=hash_token(refresh_token)
        )
        if found is None:
            raise invalid
        if csrf_token is not None and not csrf_valid(
            self.secret_key, found.session_id, cookie=csrf_token, header=csrf_token
        ):
            raise Forbidden("Missing or wrong CSRF token")
        now = utcnow()
        # The session first, locked: every end of it (logout, reuse, a password change)
        # either committed before and is seen here, or waits for this rotation and ends the
        # session with the new token in it.
        signed_in = await self.sessions.lock_live(
            self.session, id=found.session_id, user_id=found.user_id, now=now
        )
        row = await self.refresh_tokens.get_for_rotation(self.session, token_id=found.id)
        if signed_in is None or row is None:
            raise invalid
        if row.rotated_at is not None:
            await self._end_session(signed_in.id, row.user_id, now=now)
            security_log.warning(
                "refresh_token_reuse",
                security_event=True,
                user_id=str(row.user_id),
                session_id=str(row.session_id),
            )
            raise invalid
        if row.expires_at <= now:
            raise invalid
        user = await self.users.get_by_id(row.user_id)
        if user is None or not user.is_active:
            await self._end_session(signed_in.id, row.user_id, now=now)
            raise invalid
        # A session from before AUTH_ADMIN_2FA_REQUIRED was turned on lives no longer.
        await self.two_factor.ensure_not_required(user.id, user.role)
        row.rotated_at = now
        self.sessions.renew(signed_in, idle=self.settings.session_idle_timeout, now=now)
        return await self._issue(user, signed_in, now=now)

    async def _end_session(
        self, session_id: uuid.UUID, user_id: uuid.UUID, *, now: datetime
    ) -> None:
        await self.sessions.end(self.session, id=session_id, user_id=user_id, now=now)
        await self.session.commit()

    async def logout(self, *, user_id: uuid.UUID, session_id: uuid.UUID | None) -> None:
        if session_id is None:
            return
        await self._end_session(session_id, user_id, now=utcnow())
        log.info("logout", user_id=str(user_id))

    async def logout_all(self, *, user_id: uuid.UUID) -> None:
        count = await self.sessions.end_all(self.session, user_id=user_id, now=utcnow())
        await self.session.commit()
        log.info("sessions_ended", user_id=str(user_id), count=count)

    # --- password reset --------------------------------------------------------------------

    async def reset_password(self, *, token: str, new_password: str) -> None:
        row, user = await self._usable(token=token, purpose=TokenPurpose.RESET_PASSWORD)
        if not user.is_active:
            raise InvalidActionToken(INVALID_LINK)
        # Hashed before anything is locked or written; then, in one transaction, the new hash,
        # the spent token, the end of every session and API key and the notice to the address.
        await self.users.set_password(user.id, new_password)
        await self._spend(row)
        await ApiKeyService(self.session).revoke_all(user_id=user.id)
        await self.session.commit()
        security_log.info("password_reset", security_event=True, user_id=str(user.id))
