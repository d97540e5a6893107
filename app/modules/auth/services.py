"""Use cases of the auth module: registration, sign-in, token rotation, email verification,
password reset. Services own the unit of work; the users module is reached only through its
gateway."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import utcnow
from app.core.errors import AppError, Forbidden, Unauthorized
from app.core.mail import MailService
from app.core.ratelimit import RateLimiter
from app.core.security import encode_jwt, hash_token, new_opaque_token
from app.modules.auth.authenticator import ACCESS_TOKEN_TYPE
from app.modules.auth.config import AuthSettings
from app.modules.auth.models import ActionToken, RefreshToken, TokenPurpose
from app.modules.auth.repositories import ActionTokenRepository, RefreshTokenRepository
from app.modules.auth.schemas import RegisterIn, TokenPair
from app.modules.users import UserCreate, UserDTO, UsersGateway

log = structlog.get_logger("app.auth")
security_log = structlog.get_logger("app.security")


class InvalidActionToken(AppError):
    status_code = 400
    title = "Invalid Token"


INVALID_CREDENTIALS = "Incorrect username/email or password"
MAX_LOGIN_LENGTH = 320
MAX_PASSWORD_LENGTH = 128  # as at registration: no longer password can be right


class TokenMaintenance:
    """Session revocation and clean-up, usable outside a request (listeners, tasks)."""

    def __init__(self, session: AsyncSession, settings: AuthSettings) -> None:
        self.session = session
        self.settings = settings
        self.refresh_tokens = RefreshTokenRepository()
        self.action_tokens = ActionTokenRepository()

    async def revoke_user_sessions(
        self, *, user_id: uuid.UUID, keep_session_id: uuid.UUID | None = None
    ) -> int:
        count = await self.refresh_tokens.revoke_user(
            self.session, user_id=user_id, now=utcnow(), keep_family_id=keep_session_id
        )
        await self.session.commit()
        log.info("sessions_revoked", user_id=str(user_id), count=count)
        return count

    async def purge_expired(self) -> tuple[int, int]:
        before = utcnow() - timedelta(days=self.settings.token_retention_days)
        refresh = await self.refresh_tokens.purge(self.session, before=before)
        action = await self.action_tokens.purge(self.session, before=before)
        await self.session.commit()
        log.info("auth_tokens_purged", refresh_tokens=refresh, action_tokens=action)
        return refresh, action


class AuthService:
    def __init__(
        self,
        *,
        session: AsyncSession,
        settings: AuthSettings,
        secret_key: str,
        users: UsersGateway,
        mailer: MailService,
        limiter: RateLimiter,
    ) -> None:
        self.session = session
        self.settings = settings
        self.secret_key = secret_key
        self.users = users
        self.mailer = mailer
        self.limiter = limiter
        self.refresh_tokens = RefreshTokenRepository()
        self.action_tokens = ActionTokenRepository()

    # --- registration and verification -----------------------------------------------------

    async def register(self, data: RegisterIn) -> UserDTO:
        user = await self.users.create(
            UserCreate(email=data.email, username=data.username, password=data.password)
        )
        await self._send_verification(user)
        return user

    async def _new_action_token(
        self, *, user: UserDTO, purpose: TokenPurpose, ttl: timedelta
    ) -> str:
        """A token for `user` at their current address: it stops working if the address
        changes (see `_consume_for`)."""
        now = utcnow()
        await self.action_tokens.use_all(self.session, user_id=user.id, purpose=purpose, now=now)
        raw = new_opaque_token()
        await self.action_tokens.add(
            self.session,
            ActionToken(
                user_id=user.id,
                purpose=purpose.value,
                email=user.email,
                token_hash=hash_token(raw),
                expires_at=now + ttl,
            ),
        )
        await self.session.commit()
        return raw

    def _link(self, path: str, token: str) -> str:
        return f"{self.settings.frontend_url}{path}?{urlencode({'token': token})}"

    async def _mail_action_link(
        self,
        user: UserDTO,
        *,
        purpose: TokenPurpose,
        ttl: timedelta,
        template: str,
        path: str,
        **context: Any,
    ) -> None:
        """A new single-use token for `purpose`, mailed as a link to the frontend's `path`."""
        token = await self._new_action_token(user=user, purpose=purpose, ttl=ttl)
        await self.mailer.queue_template(
            to=user.email,
            template=template,
            context={
                "username": user.username,
                "link": self._link(path, token),
                "token": token,
                **context,
            },
        )

    async def _send_verification(self, user: UserDTO) -> None:
        await self._mail_action_link(
            user,
            purpose=TokenPurpose.VERIFY_EMAIL,
            ttl=timedelta(hours=self.settings.verify_email_ttl_hours),
            template="auth/verify_email",
            path="/verify-email",
            ttl_hours=self.settings.verify_email_ttl_hours,
        )

    async def _usable(self, *, token: str, purpose: TokenPurpose) -> tuple[ActionToken, UserDTO]:
        """The token, unused and unexpired, with its live user, who must still have the address
        the token was mailed to (case aside): else a 400, the same for every reason."""
        row = await self.action_tokens.get_by_hash(
            self.session, purpose=purpose, token_hash=hash_token(token)
        )
        if row is None or row.used_at is not None or row.expires_at <= utcnow():
            raise InvalidActionToken("This link is invalid, expired or already used")
        user = await self.users.get_by_id(row.user_id)
        if user is None or user.email.lower() != row.email.lower():
            raise InvalidActionToken("This link is invalid, expired or already used")
        return row, user

    async def _spend(self, row: ActionToken) -> None:
        """Mark the token used, locked first: a concurrent request that spent it wins."""
        locked = await self.action_tokens.lock(self.session, token_id=row.id)
        now = utcnow()
        if locked is None or locked.used_at is not None or locked.expires_at <= now:
            raise InvalidActionToken("This link is invalid, expired or already used")
        locked.used_at = now

    async def verify_email(self, *, token: str) -> None:
        row, _ = await self._usable(token=token, purpose=TokenPurpose.VERIFY_EMAIL)
        await self._spend(row)
        await self.session.commit()  # the token is spent even if marking fails below
        await self.users.mark_verified(row.user_id)
        log.info("email_verified", user_id=str(row.user_id))

    async def _limit_email(self, request_key: str, email: str, scope: str) -> None:
        await self.limiter.hit(key=request_key, limit=self.settings.email_rate_limit, scope=scope)
        await self.limiter.hit(
            key=hash_token(email.lower()), limit=self.settings.email_rate_limit, scope=scope
        )

    async def resend_verification(self, *, email: str, client_key: str) -> None:
        await self._limit_email(client_key, email, "auth.verify_resend")
        user = await self.users.get_by_email(email)
        if user is not None and user.is_active and not user.is_verified:
            await self._send_verification(user)

    # --- sign-in and sessions --------------------------------------------------------------

    async def login(self, *, login: str, password: str, client_key: str) -> TokenPair:
        await self.limiter.hit(
            key=client_key, limit=self.settings.login_rate_limit_ip, scope="auth.login.ip"
        )
        if len(login) > MAX_LOGIN_LENGTH or len(password) > MAX_PASSWORD_LENGTH:
            raise Unauthorized(INVALID_CREDENTIALS)
        # The account limit counts failed attempts only, per account whichever login names it
        # (username or email); an unknown login gets a budget of its own.
        account = await self.users.get_by_login(login)
        account_key = (
            f"user:{account.id}"
            if account is not None
            else f"login:{hash_token(login.strip().lower())}"
        )
        account_limit = self.settings.login_rate_limit_account
        await self.limiter.ensure_room(
            key=account_key, limit=account_limit, scope="auth.login.account"
        )
        user = await self.users.authenticate(login, password)
        if user is None or not user.is_active:
            log.info("login_failed", client=client_key)
            await self.limiter.hit(key=account_key, limit=account_limit, scope="auth.login.account")
            raise Unauthorized(INVALID_CREDENTIALS)
        if not user.is_verified and not self.settings.unverified_login_allowed:
            raise Forbidden("Verify your email address before signing in")
        pair = await self._issue(user, family_id=uuid.uuid4())
        log.info("login", user_id=str(user.id))
        return pair

    async def _issue(self, user: UserDTO, *, family_id: uuid.UUID) -> TokenPair:
        now = utcnow()
        refresh_ttl = timedelta(days=self.settings.refresh_token_ttl_days)
        raw = new_opaque_token()
        await self.refresh_tokens.add(
            self.session,
            RefreshToken(
                user_id=user.id,
                family_id=family_id,
                token_hash=hash_token(raw),
                expires_at=now + refresh_ttl,
            ),
        )
        await self.session.commit()
        access = encode_jwt(
            {
                "sub": str(user.id),
                "role": str(user.role),
                "sid": str(family_id),
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
            refresh_expires_in=int(refresh_ttl.total_seconds()),
        )

    async def refresh(self, *, refresh_token: str) -> TokenPair:
        """Rotate: the presented token is spent and a new one of the same family issued.
        A token that was already rotated means it leaked: the whole family is revoked."""
        invalid = Unauthorized("Invalid or expired refresh token")
        found = await self.refresh_tokens.get_by_hash(
            self.session, token_hash=hash_token(refresh_token)
        )
        if found is None:
            raise invalid
        # Serialise with every revocation of this user's sessions (they take the same lock),
        # then read the row again: a revocation that committed meanwhile is seen, and one that
        # comes later sees the token this rotation inserts.
        await self.refresh_tokens.lock_user(self.session, user_id=found.user_id)
        row = await self.refresh_tokens.get_for_rotation(self.session, token_id=found.id)
        now = utcnow()
        if row is None:
            raise invalid
        if row.rotated_at is not None:
            await self._revoke_family(row, now=now)
            security_log.warning(
                "refresh_token_reuse",
                security_event=True,
                user_id=str(row.user_id),
                family_id=str(row.family_id),
            )
            raise invalid
        if row.revoked_at is not None or row.expires_at <= now:
            raise invalid
        user = await self.users.get_by_id(row.user_id)
        if user is None or not user.is_active:
            await self._revoke_family(row, now=now)
            raise invalid
        row.rotated_at = now
        return await self._issue(user, family_id=row.family_id)

    async def _revoke_family(self, row: RefreshToken, *, now: datetime) -> None:
        await self.refresh_tokens.revoke_family(
            self.session, family_id=row.family_id, user_id=row.user_id, now=now
        )
        await self.session.commit()

    async def logout(self, *, user_id: uuid.UUID, session_id: uuid.UUID | None) -> None:
        if session_id is None:
            return
        await self.refresh_tokens.revoke_family(
            self.session, family_id=session_id, user_id=user_id, now=utcnow()
        )
        await self.session.commit()
        log.info("logout", user_id=str(user_id))

    async def logout_all(self, *, user_id: uuid.UUID) -> None:
        await TokenMaintenance(self.session, self.settings).revoke_user_sessions(user_id=user_id)

    # --- password reset --------------------------------------------------------------------

    async def forgot_password(self, *, email: str, client_key: str) -> None:
        """Same answer, in similar time, whether or not the account exists."""
        await self._limit_email(client_key, email, "auth.password_forgot")
        user = await self.users.get_by_email(email)
        # One argon2id verification's time for every address, known or not: it dwarfs the
        # token and mail work below, so the timing does not tell which addresses exist.
        await self.users.burn_password_time(new_opaque_token())
        if user is None or not user.is_active:
            return
        await self._mail_action_link(
            user,
            purpose=TokenPurpose.RESET_PASSWORD,
            ttl=timedelta(minutes=self.settings.password_reset_ttl_minutes),
            template="auth/reset_password",
            path="/reset-password",
            ttl_minutes=self.settings.password_reset_ttl_minutes,
        )

    async def reset_password(self, *, token: str, new_password: str) -> None:
        row, user = await self._usable(token=token, purpose=TokenPurpose.RESET_PASSWORD)
        if not user.is_active:
            raise InvalidActionToken("This link is invalid, expired or already used")
        # Hashed before anything is locked or written; then, in one transaction, the new hash,
        # the spent token and the end of every session.
        await self.users.set_password(user.id, new_password)
        await self._spend(row)
        await self.refresh_tokens.revoke_user(self.session, user_id=user.id, now=utcnow())
        await self.session.commit()
        security_log.info("password_reset", security_event=True, user_id=str(user.id))
