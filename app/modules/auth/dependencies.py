"""Authentication dependencies other modules use: CurrentUser, ActiveUser, require_role(...).

The users module's routes depend on these, and these look users up through the users
module's `UsersDirectory`; so `app.modules.users` is imported when a request arrives, never at
import time (that would be an import cycle between the two packages).
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, cast

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from fastapi.security.base import SecurityBase

from app.core.config import Settings
from app.core.db import read_pool_of, utcnow
from app.core.errors import Forbidden, Unauthorized
from app.core.security import InvalidToken, decode_jwt
from app.modules.auth.config import AuthSettings, auth_config
from app.modules.auth.repositories import RefreshTokenRepository

if TYPE_CHECKING:
    from app.modules.users import UserDTO

TOKEN_URL = "/api/v1/auth/login"  # noqa: S105
ACCESS_TOKEN_TYPE = "access"  # noqa: S105


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    role: str
    session_id: uuid.UUID | None
    token_id: str


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _invalid() -> Unauthorized:
    return Unauthorized("Invalid or expired access token")


def access_claims(request: Request, token: str | None, settings: AuthSettings) -> AccessClaims:
    """The verified claims of the bearer access token, or a 401."""
    if not token:
        raise Unauthorized("Not authenticated")
    try:
        claims = decode_jwt(
            token,
            key=request.app.state.settings.secret_key,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
    except InvalidToken:
        raise _invalid() from None
    if claims.get("typ") != ACCESS_TOKEN_TYPE:
        raise _invalid()
    try:
        user_id = uuid.UUID(str(claims["sub"]))
        session_id = uuid.UUID(str(claims["sid"])) if claims.get("sid") else None
    except (ValueError, KeyError):
        raise _invalid() from None
    return AccessClaims(
        user_id=user_id,
        role=str(claims.get("role", "")),
        session_id=session_id,
        token_id=str(claims["jti"]),
    )


async def authenticate(request: Request, token: str | None, settings: AuthSettings) -> UserDTO:
    """The signed-in user: a valid access token of a live sign-in session (not logged out,
    not revoked by logout-all, a password reset or refresh-token reuse) of a live, active
    account (else 401). One read on the read pool, outside any transaction: the users
    directory's lookup with this module's session condition added, so a revocation committed
    before the request started is always seen."""
    from app.modules.users import UsersDirectory

    claims = access_claims(request, token, settings)
    if claims.session_id is None:
        raise _invalid()
    live_session, values = RefreshTokenRepository().live_session_condition(
        family_id=claims.session_id, user_id=claims.user_id, now=utcnow()
    )
    user = await UsersDirectory(read_pool_of(request)).get_live(
        claims.user_id, also=live_session, also_params=values
    )
    if user is None or not user.is_active:
        raise _invalid()
    request.state.user_id = user.id  # rate limits count per user from here on
    return user


async def auth_settings_of(request: Request) -> AuthSettings:
    """`auth_config` as FastAPI would resolve it, a test's dependency override included,
    without a dependency node of its own (see `_Bearer`). An override must be a plain function
    of no arguments (sync or async) returning the settings: it is called, not resolved."""
    override = request.app.dependency_overrides.get(auth_config)
    if override is None:
        return await auth_config()
    if (
        inspect.signature(override).parameters
        or inspect.isgeneratorfunction(override)
        or inspect.isasyncgenfunction(override)
    ):
        raise TypeError("an override of auth_config must take no arguments and return the settings")
    settings = override()
    return cast(AuthSettings, await settings if inspect.isawaitable(settings) else settings)


class _Bearer(SecurityBase):
    """A bearer-token dependency that FastAPI resolves as one node and documents as the
    OAuth2 password-flow scheme ("Authorize" in /docs).

    Each dependency node costs about as much as the database read behind it: the
    authenticated users lookup spent 9 % of its instructions on a token node and a settings
    node under the user node (callgrind). So the token is read here, as
    `OAuth2PasswordBearer` reads it, and the settings with `auth_settings_of`."""

    def __init__(self) -> None:
        self._scheme = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)
        self.model = self._scheme.model
        self.scheme_name = self._scheme.scheme_name

    async def token(self, request: Request) -> str | None:
        return await self._scheme(request)


class _AccessClaimsDependency(_Bearer):
    async def __call__(self, request: Request) -> AccessClaims:
        return access_claims(request, await self.token(request), await auth_settings_of(request))


class _SignedInUserDependency(_Bearer):
    def __init__(self, *, verified: bool) -> None:
        super().__init__()
        self.verified = verified

    # FastAPI reads a callable object's annotations with `inspect.signature(eval_str=True)`,
    # which must resolve all of them at run time: a `UserDTO` return (imported for type checking
    # only) would leave `request` unresolved too. `Any` here; callers get `CurrentUser`.
    async def __call__(self, request: Request) -> Any:
        settings = await auth_settings_of(request)
        user = await authenticate(request, await self.token(request), settings)
        if self.verified and not user.is_verified and not settings.unverified_access_allowed:
            raise Forbidden("Verify your email address first")
        return user


get_access_claims = _AccessClaimsDependency()
"""The verified claims of the bearer access token (no database read), else 401."""
Claims = Annotated[AccessClaims, Depends(get_access_claims)]

get_current_user = _SignedInUserDependency(verified=False)
"""The signed-in user (see `authenticate`), else 401."""
if TYPE_CHECKING:
    CurrentUser = Annotated[UserDTO, Depends(get_current_user)]
else:
    CurrentUser = Annotated[Any, Depends(get_current_user)]

get_active_user = _SignedInUserDependency(verified=True)
"""The current user, who must also have verified their email unless
AUTH_UNVERIFIED_ACCESS_ALLOWED is set (else 403)."""
if TYPE_CHECKING:
    ActiveUser = Annotated[UserDTO, Depends(get_active_user)]
else:
    ActiveUser = Annotated[Any, Depends(get_active_user)]


def require_role(*roles: str) -> Callable[..., Awaitable[UserDTO]]:
    """A dependency that lets through active users with one of `roles` (else 403)."""
    allowed = frozenset(str(role) for role in roles)

    async def dependency(user: ActiveUser) -> UserDTO:
        if str(user.role) not in allowed:
            raise Forbidden("You do not have the role this action needs")
        return user

    return dependency


async def get_current_session_id(claims: Claims) -> uuid.UUID | None:
    """The sign-in session (refresh token family) of the access token."""
    return claims.session_id


CurrentSessionId = Annotated[uuid.UUID | None, Depends(get_current_session_id)]
