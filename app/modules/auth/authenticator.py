"""Core's `Authenticator` for this module's bearer access tokens: a JWT of a live sign-in
session, of a live, active account. Installed through the module spec."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from app.core.auth import Principal
from app.core.config import Settings
from app.core.db import Database, utcnow
from app.core.security import InvalidToken, decode_jwt
from app.modules.auth.config import AuthSettings, load_auth_settings
from app.modules.auth.repositories import RefreshTokenRepository
from app.modules.users import UsersDirectory

ACCESS_TOKEN_TYPE = "access"  # noqa: S105


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID


def read_access_token(token: str, *, key: str, settings: AuthSettings) -> AccessClaims | None:
    """The claims of a valid access token of ours (signature, algorithm, expiry, issuer,
    audience and type checked), else None."""
    try:
        claims = decode_jwt(
            token, key=key, issuer=settings.jwt_issuer, audience=settings.jwt_audience
        )
    except InvalidToken:
        return None
    if claims.get("typ") != ACCESS_TOKEN_TYPE:
        return None
    try:
        return AccessClaims(
            user_id=uuid.UUID(str(claims["sub"])), session_id=uuid.UUID(claims["sid"])
        )
    except (ValueError, KeyError, TypeError):
        return None


class TokenAuthenticator:
    """Who an access token stands for, now: its session must still be live (not logged out,
    not revoked by logout-all, a password reset or refresh-token reuse) and its account live
    and active. Read outside any transaction, so a revocation committed before the request
    started is always seen."""

    def __init__(self, settings: Settings, database: Database) -> None:
        self.key = settings.secret_key
        self.database = database
        self.settings = load_auth_settings()
        self.refresh_tokens = RefreshTokenRepository()

    async def authenticate(self, token: str) -> Principal | None:
        claims = read_access_token(token, key=self.key, settings=self.settings)
        if claims is None:
            return None
        async with self.database.engine.connect() as connection:
            live = await self.refresh_tokens.session_is_live(
                connection, family_id=claims.session_id, user_id=claims.user_id, now=utcnow()
            )
            user = await UsersDirectory(connection).get(claims.user_id) if live else None
        if user is None or not user.is_active:
            return None
        return Principal(
            id=user.id,
            role=str(user.role),
            session_id=claims.session_id,
            is_verified=user.is_verified,
            is_active=user.is_active,
        )
