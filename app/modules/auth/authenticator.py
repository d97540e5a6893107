"""Core's `Authenticator` for this module's credentials: an access token (a JWT of a live
sign-in session, of a live, active account) or an API key (`api_keys`). Installed through the
module spec."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from app.core.auth import Principal
from app.core.config import Settings
from app.core.db import Database
from app.core.security import InvalidToken, decode_jwt
from app.modules.auth.api_keys.service import ApiKeyVerifier, is_api_key
from app.modules.auth.config import AuthSettings, load_auth_settings
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
    """Who an access token stands for, now: its sign-in session must still be live (not
    ended by a logout, a logout-all, a password change or reset or a reused refresh token; not
    past its absolute or idle end) and its account live (one that is not active, core refuses).
    One read outside any transaction, so an end committed before the request started is
    always seen."""

    def __init__(self, settings: Settings, database: Database) -> None:
        self.key = settings.secret_key
        self.database = database
        self.settings = load_auth_settings()
        self.api_keys = ApiKeyVerifier(database)

    async def authenticate(self, token: str) -> Principal | None:
        if is_api_key(token):
            return await self.api_keys.authenticate(token)
        claims = read_access_token(token, key=self.key, settings=self.settings)
        if claims is None:
            return None
        async with self.database.engine.connect() as connection:
            user = await UsersDirectory(connection).get_signed_in(claims.user_id, claims.session_id)
        if user is None:
            return None
        return Principal(
            id=user.id,
            role=str(user.role),
            session_id=claims.session_id,
            is_verified=user.is_verified,
            is_active=user.is_active,
        )
