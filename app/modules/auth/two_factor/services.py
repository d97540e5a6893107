"""Use cases of two-factor sign-in. TOTP codes (pyotp) are accepted one time step either side
of the server's clock, and each at most once: the last accepted step is stored and a code of
that step or an earlier one is refused. Code attempts are counted per account before they
are checked (the right one is given back). The second step of a sign-in is a short-lived
signed challenge naming the account as it was when its password was checked."""

from __future__ import annotations

import re
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

import pyotp
import segno
import structlog
from pyotp.exceptions import OTPVerificationError
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import utcnow
from app.core.errors import Conflict, Forbidden, ServiceUnavailable, Unauthorized
from app.core.ratelimit import RateLimiter, RateLimitState
from app.core.security import InvalidToken, decode_jwt, encode_jwt, hash_token
from app.modules.auth.config import AuthSettings
from app.modules.auth.two_factor.config import TwoFactorSettings
from app.modules.auth.two_factor.models import TwoFactor
from app.modules.auth.two_factor.repositories import RecoveryCodeRepository, TwoFactorRepository
from app.modules.auth.two_factor.schemas import Enrolment, SecondFactorRequired, TwoFactorStatus
from app.modules.users import Role, UserDTO, UsersGateway

security_log = structlog.get_logger("app.security")

RECOVERY_CODE_COUNT = 10
CHALLENGE_TYPES = {"totp": "2fa", "enrol": "2fa_enrol"}
INVALID_CHALLENGE = "Invalid or expired sign-in challenge: sign in again"
WRONG_CODE = "The code is wrong or was already used"
ADMIN_2FA_MISSING = (
    "Administrators must use two-factor sign-in here: sign in again with your password to enrol"
)
CHALLENGES_UNAVAILABLE = "Two-factor sign-in is unavailable right now"
_TOTP_CODE = re.compile(r"^\d{6}$")


def _spent_key(claims: dict[str, Any]) -> str:
    return f"auth:2fa:spent:{claims.get('jti')}"


def _matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step whose code `code` is: the current one or one either side (clock skew)."""
    try:
        return pyotp.TOTP(secret).verify_and_get_timecode(code, for_time=now, valid_window=1)
    except OTPVerificationError:
        return None


def _normalise_recovery(code: str) -> str:
    return code.replace("-", "").replace(" ", "").lower()


def _new_recovery_code() -> str:
    raw = secrets.token_hex(5)
    return f"{raw[:5]}-{raw[5:]}"


class TwoFactorService:
    def __init__(
        self,
        *,
        session: AsyncSession,
        settings: TwoFactorSettings,
        auth_settings: AuthSettings,
        secret_key: str,
        users: UsersGateway,
        limiter: RateLimiter,
        redis: Redis,
    ) -> None:
        self.session = session
        self.settings = settings
        self.auth_settings = auth_settings
        self.secret_key = secret_key
        self.users = users
        self.limiter = limiter
        self.redis = redis
        self.secrets = TwoFactorRepository()
        self.recovery = RecoveryCodeRepository()

    # --- the second step of a sign-in ------------------------------------------------------

    async def pending_for(self, user: UserDTO) -> SecondFactorRequired | None:
        """The challenge a sign-in of `user` answers instead of tokens, if any: a code for an
        enrolled account, enrolment for an administrator when AUTH_ADMIN_2FA_REQUIRED."""
        if await self.secrets.is_enabled(self.session, user_id=user.id):
            return self._challenge(user, "totp")
        if self.settings.admin_2fa_required and user.role is Role.ADMIN:
            return self._challenge(user, "enrol")
        return None

    async def ensure_not_required(self, user_id: uuid.UUID, role: str) -> None:
        """403 for an administrator without two-factor sign-in when AUTH_ADMIN_2FA_REQUIRED:
        what a sign-in would refuse them (a new session, a key) is refused on every path."""
        if (
            self.settings.admin_2fa_required
            and role == Role.ADMIN
            and not await self.secrets.is_enabled(self.session, user_id=user_id)
        ):
            raise Forbidden(ADMIN_2FA_MISSING)

    def _challenge(self, user: UserDTO, method: str) -> SecondFactorRequired:
        ttl = self.settings.two_factor_challenge_ttl_seconds
        token = encode_jwt(
            {
                "sub": str(user.id),
                "typ": CHALLENGE_TYPES[method],
                # The account as its password was checked: a change since voids the challenge.
                "ver": user.updated_at.isoformat(),
            },
            key=self.secret_key,
            issuer=self.auth_settings.jwt_issuer,
            audience=self.auth_settings.jwt_audience,
            ttl=timedelta(seconds=ttl),
        )
        return SecondFactorRequired(method=method, challenge=token, expires_in=ttl)

    async def challenged_user(self, challenge: str, *, method: str) -> UserDTO:
        """The account a valid, unexpired, unspent challenge of `method` names, unchanged
        since; else 401."""
        user, _ = await self._challenged(challenge, method=method)
        return user

    async def _challenged(self, challenge: str, *, method: str) -> tuple[UserDTO, dict[str, Any]]:
        try:
            claims = decode_jwt(
                challenge,
                key=self.secret_key,
                issuer=self.auth_settings.jwt_issuer,
                audience=self.auth_settings.jwt_audience,
            )
            user_id = uuid.UUID(str(claims["sub"]))
        except (InvalidToken, KeyError, ValueError):
            raise Unauthorized(INVALID_CHALLENGE) from None
        if claims.get("typ") != CHALLENGE_TYPES[method]:
            raise Unauthorized(INVALID_CHALLENGE)
        try:
            spent = await self.redis.exists(_spent_key(claims))
        except RedisError:
            raise ServiceUnavailable(CHALLENGES_UNAVAILABLE) from None
        user = await self.users.get_by_id(user_id)
        if (
            spent
            or user is None
            or not user.is_active
            or user.updated_at.isoformat() != claims.get("ver")
        ):
            raise Unauthorized(INVALID_CHALLENGE)
        return user, claims

    async def _spend_challenge(self, claims: dict[str, Any]) -> None:
        """Mark the challenge used until it expires (one sign-in per password check); 401 when
        a concurrent request used it first."""
        ttl = max(1, int(claims["exp"] - utcnow().timestamp()))
        try:
            first = await self.redis.set(_spent_key(claims), "1", nx=True, ex=ttl)
        except RedisError:
            raise ServiceUnavailable(CHALLENGES_UNAVAILABLE) from None
        if not first:
            raise Unauthorized(INVALID_CHALLENGE)

    async def complete(self, challenge: str, code: str) -> UserDTO:
        """The account, once the challenge and a code (TOTP or recovery) check out; the code
        is spent in the caller's transaction (it commits when it issues the tokens), the
        challenge in Redis: it signs in once."""
        user, claims = await self._challenged(challenge, method="totp")
        if not await self._spend_code(user.id, code, recovery_allowed=True):
            raise Unauthorized(WRONG_CODE)
        await self._spend_challenge(claims)
        return user

    async def complete_enrolment(self, challenge: str, code: str) -> tuple[UserDTO, list[str]]:
        """An administrator's required enrolment, confirmed with a first code: the account and
        its recovery codes; the challenge is spent (it signs in once)."""
        user, claims = await self._challenged(challenge, method="enrol")
        codes = await self.confirm(user.id, code)
        await self._spend_challenge(claims)
        return user, codes

    # --- codes -----------------------------------------------------------------------------

    async def _spend_code(self, user_id: uuid.UUID, code: str, *, recovery_allowed: bool) -> bool:
        """Counted before it is checked (429 past either per-account budget);
        a TOTP code is accepted once, a recovery code used up. The right one is given back."""
        attempt = await self._spend_attempt(user_id)
        now = utcnow()
        row = await self.secrets.lock(self.session, user_id=user_id)
        ok = False
        if row is not None and row.confirmed_at is not None:
            if _TOTP_CODE.match(code):
                ok = self._accept_step(row, code, now)
            elif recovery_allowed:
                ok = await self.recovery.use(
                    self.session,
                    user_id=user_id,
                    code_hash=hash_token(_normalise_recovery(code)),
                    now=now,
                )
        if not ok:
            security_log.warning("second_factor_failed", security_event=True, user_id=str(user_id))
            return False
        await self._refund_attempt(attempt)
        return True

    async def _spend_attempt(self, user_id: uuid.UUID) -> tuple[RateLimitState, ...]:
        """Count a code attempt against both of the account's budgets (429 when one is spent):
        AUTH_TWO_FACTOR_RATE_LIMIT, and the longer AUTH_TWO_FACTOR_HOURLY_RATE_LIMIT."""
        budgets = (
            ("auth.2fa", self.settings.two_factor_rate_limit),
            ("auth.2fa.long", self.settings.two_factor_hourly_rate_limit),
        )
        return tuple(
            [
                await self.limiter.hit(
                    key=f"user:{user_id}",
                    limit=limit,
                    scope=scope,
                    fail_open=self.limiter.credentials_fail_open,
                )
                for scope, limit in budgets
            ]
        )

    async def _refund_attempt(self, attempt: tuple[RateLimitState, ...]) -> None:
        for state in attempt:
            await self.limiter.refund(state)

    @staticmethod
    def _accept_step(row: TwoFactor, code: str, now: datetime) -> bool:
        step = _matching_step(row.secret, code, now)
        if step is None or (row.last_step is not None and step <= row.last_step):
            return False
        row.last_step = step
        return True

    # --- enrolment -------------------------------------------------------------------------

    async def status(self, user_id: uuid.UUID) -> TwoFactorStatus:
        row = await self.secrets.get(self.session, user_id=user_id)
        enabled = row is not None and row.confirmed_at is not None
        left = await self.recovery.count_unused(self.session, user_id=user_id) if enabled else 0
        return TwoFactorStatus(
            enabled=enabled, pending=row is not None and not enabled, recovery_codes_left=left
        )

    async def begin_enrolment(self, user_id: uuid.UUID) -> Enrolment:
        """A new secret (replacing an unconfirmed one); 409 when two-factor is already on."""
        user = await self.users.get_by_id(user_id)
        if user is None:
            raise Unauthorized("Not authenticated")
        row = await self.secrets.lock(self.session, user_id=user.id)
        if row is not None and row.confirmed_at is not None:
            raise Conflict("Two-factor sign-in is already on: disable it first")
        secret = pyotp.random_base32()
        if row is None:
            await self.secrets.add(self.session, TwoFactor(user_id=user.id, secret=secret))
        else:
            row.secret, row.last_step = secret, None
        await self.session.commit()
        uri = pyotp.TOTP(secret).provisioning_uri(
            name=user.email, issuer_name=self.settings.two_factor_issuer
        )
        return Enrolment(
            secret=secret, otpauth_uri=uri, qr_svg=segno.make(uri, error="m").svg_inline(scale=4)
        )

    async def confirm(self, user_id: uuid.UUID, code: str) -> list[str]:
        """Turn two-factor on with a first code from the app; the recovery codes, shown once."""
        attempt = await self._spend_attempt(user_id)
        row = await self.secrets.lock(self.session, user_id=user_id)
        if row is None or row.confirmed_at is not None:
            raise Conflict("No enrolment is waiting for a code: start one first")
        now = utcnow()
        if not _TOTP_CODE.match(code) or not self._accept_step(row, code, now):
            raise Forbidden(WRONG_CODE)
        row.confirmed_at = now
        codes = [_new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
        await self.recovery.replace(
            self.session,
            user_id=user_id,
            hashes=[hash_token(_normalise_recovery(code)) for code in codes],
        )
        await self.session.commit()
        await self._refund_attempt(attempt)
        security_log.info("two_factor_enabled", security_event=True, user_id=str(user_id))
        return codes

    async def check_password(self, user_id: uuid.UUID, password: str, *, client: str) -> None:
        """403 unless `password` is the account's (budgeted as a sign-in: 429 when spent)."""
        if not await self.users.check_password(user_id, password, client=client):
            raise Forbidden("The password is wrong")

    async def disable(self, user_id: uuid.UUID, *, password: str, code: str, client: str) -> None:
        """Needs the password (budgeted as a sign-in) and a code: a stolen access token alone
        cannot turn the second factor off."""
        await self.check_password(user_id, password, client=client)
        if not await self._spend_code(user_id, code, recovery_allowed=True):
            raise Forbidden(WRONG_CODE)
        await self.secrets.remove(self.session, user_id=user_id)
        await self.session.commit()
        security_log.info("two_factor_disabled", security_event=True, user_id=str(user_id))
