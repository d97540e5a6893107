"""Use cases of API keys: create (the key shown once), list, revoke; and who a presented key
stands for (`ApiKeyVerifier`, used by the auth module's authenticator)."""

from __future__ import annotations

import hmac
import secrets
import uuid
from datetime import timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.auth import Principal
from app.core.db import Database, ListParams, Slice, utcnow
from app.core.errors import Conflict, Forbidden, NotFound
from app.core.security import hash_token
from app.modules.auth.api_keys.models import ApiKey
from app.modules.auth.api_keys.repository import LAST_USED_PRECISION, ApiKeyRepository
from app.modules.auth.api_keys.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut
from app.modules.auth.two_factor.config import load_two_factor_settings
from app.modules.auth.two_factor.repositories import TwoFactorRepository
from app.modules.auth.two_factor.services import ADMIN_2FA_MISSING
from app.modules.users import Role, UsersDirectory, UsersGateway

KEY_PREFIX = "ak_"
LOOKUP_BYTES = 8  # 16 hex digits after the prefix: the part stored in the clear
LOOKUP_LENGTH = len(KEY_PREFIX) + 2 * LOOKUP_BYTES
MAX_LIVE_KEYS = 50  # per user
MAX_KEY_LENGTH = 128

security_log = structlog.get_logger("app.security")


def is_api_key(token: str) -> bool:
    """Whether `token` has the shape of one of our keys (`ak_<lookup>_<secret>`)."""
    return (
        token.startswith(KEY_PREFIX)
        and len(token) <= MAX_KEY_LENGTH
        and token[LOOKUP_LENGTH : LOOKUP_LENGTH + 1] == "_"
    )


def new_api_key() -> tuple[str, str]:
    """A new key and its lookup prefix; 256 random bits after the prefix."""
    lookup = KEY_PREFIX + secrets.token_hex(LOOKUP_BYTES)
    return f"{lookup}_{secrets.token_urlsafe(32)}", lookup


class ApiKeyService:
    def __init__(self, session: AsyncSession, users: UsersGateway | None = None) -> None:
        self.session = session
        self.users = users  # for the password check of `create`
        self.keys = ApiKeyRepository()

    async def create(self, *, user_id: uuid.UUID, data: ApiKeyCreate, client: str) -> ApiKeyCreated:
        """A new key; needs the account's password (403 when wrong, budgeted as a sign-in): a
        stolen session alone cannot mint a credential that outlives it."""
        if self.users is None:
            raise RuntimeError("creating a key needs the users gateway")
        if not await self.users.check_password(user_id, data.current_password, client=client):
            raise Forbidden("The password is wrong")
        now = utcnow()
        if await self.keys.count_live(self.session, user_id=user_id, now=now) >= MAX_LIVE_KEYS:
            raise Conflict(f"At most {MAX_LIVE_KEYS} live API keys per account: revoke one")
        raw, lookup = new_api_key()
        key = await self.keys.create(
            self.session,
            user_id=user_id,
            name=data.name,
            lookup=lookup,
            key_hash=hash_token(raw),
            scopes=[str(scope) for scope in data.scopes],
            created_at=now,
            expires_at=now + timedelta(days=data.expires_in_days),
        )
        created = ApiKeyCreated(**ApiKeyOut.model_validate(key).model_dump(), key=raw)
        await self.session.commit()
        security_log.info(
            "api_key_created", security_event=True, user_id=str(user_id), key_id=str(key.id)
        )
        return created

    async def list(self, *, user_id: uuid.UUID, params: ListParams) -> Slice[ApiKey]:
        """The user's keys that are not revoked (expired ones too, until revoked)."""
        return await self.keys.list(
            self.session,
            params,
            where=(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None)),
        )

    async def revoke(self, *, user_id: uuid.UUID, key_id: uuid.UUID) -> None:
        """404 for a key that is not the user's, or already revoked."""
        if not await self.keys.revoke(self.session, key_id=key_id, user_id=user_id, now=utcnow()):
            raise NotFound("API key not found")
        await self.session.commit()
        security_log.info(
            "api_key_revoked", security_event=True, user_id=str(user_id), key_id=str(key_id)
        )

    async def revoke_all(self, *, user_id: uuid.UUID) -> int:
        """Revoke every key of the user (their password changed: whoever held the account
        may have made keys). The caller commits."""
        count = await self.keys.revoke_all(self.session, user_id=user_id, now=utcnow())
        if count:
            security_log.info(
                "api_keys_revoked", security_event=True, user_id=str(user_id), count=count
            )
        return count


class ApiKeyVerifier:
    """Who a key stands for now: a usable key (not revoked, not expired) of a live account;
    an administrator's only with two-factor sign-in on when AUTH_ADMIN_2FA_REQUIRED (403).
    One connection: the key, then its owner; its last use is recorded at most once a minute."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.keys = ApiKeyRepository()
        self.two_factor = TwoFactorRepository()

    async def authenticate(self, token: str) -> Principal | None:
        now = utcnow()
        async with self.database.engine.connect() as connection:
            key = await self.keys.read_usable(connection, lookup=token[:LOOKUP_LENGTH], now=now)
            if key is None or not hmac.compare_digest(key["key_hash"], hash_token(token)):
                return None
            user = await UsersDirectory(connection).get(key["user_id"])
            if user is None:
                return None
            # Only an administrator's key pays for this read, and only when it is required.
            if (
                user.role is Role.ADMIN
                and load_two_factor_settings().admin_2fa_required
                and not await self.two_factor.is_enabled(connection, user_id=user.id)
            ):
                raise Forbidden(ADMIN_2FA_MISSING)
            last_used = key["last_used_at"]
            if last_used is None or now - last_used >= LAST_USED_PRECISION:
                await self.keys.touch(connection, key_id=key["id"], now=now)
        return Principal(
            id=user.id,
            role=str(user.role),
            session_id=None,
            is_verified=user.is_verified,
            is_active=user.is_active,
            scopes=frozenset(key["scopes"]),
            api_key_id=key["id"],
        )
