"""Who is calling: the `Principal`, the dependencies that require one, and the interface of
the module that turns a bearer token into a principal (the auth module provides it).

    @router.get("/things")
    async def list_things(principal: ActivePrincipal) -> ...

    @router.delete("/things/{id}", dependencies=[Depends(require_role("admin"))])

Core knows no module: a module's spec names its authenticator (`ModuleSpec(authenticator=...)`)
and the app's lifespan installs it. Tests may replace it with `app.dependency_overrides`.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Protocol

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from app.core.config import Settings, SettingsDep
from app.core.db import Database
from app.core.errors import Forbidden, Unauthorized
from app.core.request_context import set_user_id

# Documentation only: where /docs' "Authorize" button posts the OAuth2 password form.
TOKEN_URL = "/api/v1/auth/login"  # noqa: S105


@dataclass(frozen=True, slots=True)
class Principal:
    """The signed-in account a request acts for."""

    id: uuid.UUID
    role: str
    session_id: uuid.UUID | None  # the sign-in session the credentials belong to
    is_verified: bool  # the account's email address is confirmed
    is_active: bool


class Authenticator(Protocol):
    """Turns a bearer credential into the principal it stands for now."""

    async def authenticate(self, token: str) -> Principal | None:
        """The principal, or None when the token stands for nobody: malformed, expired, of an
        ended session, or of an account that is gone. `get_current_principal` refuses a
        principal that is not active."""
        ...


AuthenticatorFactory = Callable[[Settings, Database], Authenticator]

bearer_token = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)


async def get_authenticator(request: Request) -> Authenticator:
    authenticator: Authenticator | None = getattr(request.app.state, "authenticator", None)
    if authenticator is None:
        raise RuntimeError("no module provides an authenticator (ModuleSpec.authenticator)")
    return authenticator


async def get_current_principal(
    request: Request,
    token: Annotated[str | None, Depends(bearer_token)],
    authenticator: Annotated[Authenticator, Depends(get_authenticator)],
) -> Principal:
    """The caller, from the `Authorization: Bearer` token; else 401."""
    if not token:
        raise Unauthorized("Not authenticated")
    principal = await authenticator.authenticate(token)
    if principal is None or not principal.is_active:
        raise Unauthorized("Invalid or expired access token")
    request.state.principal = principal  # rate limits count per account from here on
    set_user_id(str(principal.id))  # error reports name the account
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_current_principal)]


async def get_active_principal(principal: CurrentPrincipal, settings: SettingsDep) -> Principal:
    """The caller, who must also have verified their email address unless
    AUTH_UNVERIFIED_ACCESS_ALLOWED is set; else 403."""
    if not principal.is_verified and not settings.auth_unverified_access_allowed:
        raise Forbidden("Verify your email address first")
    return principal


ActivePrincipal = Annotated[Principal, Depends(get_active_principal)]


def require_role(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that lets through active principals with one of `roles`; else 403."""
    allowed = frozenset(str(role) for role in roles)

    async def dependency(principal: ActivePrincipal) -> Principal:
        if principal.role not in allowed:
            raise Forbidden("You do not have the role this action needs")
        return principal

    return dependency
