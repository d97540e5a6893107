"""Who is calling: the `Principal`, the dependencies that require one, and the interface of
the module that turns a credential into a principal (the auth module provides it).

    @router.get("/things")
    async def list_things(principal: ActivePrincipal) -> ...

    @router.delete("/things/{id}", dependencies=[Depends(require_role("admin"))])
    @router.post("/reports", dependencies=[Depends(require_scope(Scope.WRITE))])

A credential comes in one of three places, tried in this order: `Authorization: Bearer`
(an access token or an API key), `X-API-Key` (an API key), or the access cookie of a browser
session (AUTH_TRANSPORT cookie or both), which for a state-changing method also needs the
session's CSRF token in `X-CSRF-Token` (`app.core.csrf`).

Core knows no module: a module's spec names its authenticator (`ModuleSpec(authenticator=...)`)
and the app's lifespan installs it. Tests may replace it with `app.dependency_overrides`.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

from fastapi import Depends, FastAPI, Request
from fastapi.security import APIKeyCookie, APIKeyHeader, OAuth2PasswordBearer

from app.core.config import AuthTransport, Environment, Settings, SettingsDep
from app.core.csrf import CSRF_COOKIE, CSRF_HEADER, SAFE_METHODS, csrf_valid
from app.core.db import Database
from app.core.errors import Forbidden, Unauthorized
from app.core.request_context import set_user_id

# Documentation only: where /docs' "Authorize" button posts the OAuth2 password form.
TOKEN_URL = "/api/v1/auth/login"  # noqa: S105
ACCESS_COOKIE = "access_token"
API_KEY_HEADER = "X-API-Key"
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def cookies_secure(request: Request, settings: Settings) -> bool:
    """Whether the session cookies are Secure (and `__Host-` named): always, but in
    development over plain http on the developer's own machine, where browsers would drop
    them."""
    url = request.url
    local_http = url.scheme == "http" and url.hostname in LOCAL_HOSTS
    return not (settings.app_env is Environment.DEVELOPMENT and local_http)


def cookie_name(name: str, *, secure: bool) -> str:
    """`__Host-<name>` for a Secure cookie of Path=/: a browser takes it only from a secure
    page of this very host, so a sibling subdomain or a plain-http page cannot plant one."""
    return f"__Host-{name}" if secure else name


class Scope(enum.StrEnum):
    """What a principal may do. A sign-in session holds every scope; an API key those it was
    given. Safe methods need `read` and the others `write`, whatever the route; a route may
    require more with `require_scope`."""

    READ = "read"
    WRITE = "write"


ALL_SCOPES: frozenset[str] = frozenset(Scope)


@dataclass(frozen=True, slots=True)
class Principal:
    """The account a request acts for, and with what."""

    id: uuid.UUID
    role: str
    session_id: uuid.UUID | None  # the sign-in session the credentials belong to
    is_verified: bool  # the account's email address is confirmed
    is_active: bool
    scopes: frozenset[str] = ALL_SCOPES
    api_key_id: uuid.UUID | None = None  # set when an API key, not a sign-in, stands for it


class Authenticator(Protocol):
    """Turns a credential (an access token or an API key) into the principal it stands for
    now."""

    async def authenticate(self, token: str) -> Principal | None:
        """The principal, or None when the token stands for nobody: malformed, expired,
        revoked, of an ended session, or of an account that is gone. `get_current_principal`
        refuses a principal that is not active."""
        ...


AuthenticatorFactory = Callable[[Settings, Database], Authenticator]

# The three places a credential may come from, as OpenAPI security schemes: /docs' "Authorize"
# offers each. The bearer scheme is a dependency (it reads the header); the other two are read
# in `get_current_principal` itself and documented by `document_credentials`.
bearer_token = OAuth2PasswordBearer(
    tokenUrl=TOKEN_URL,
    auto_error=False,
    description="An access token from the password form, or an API key as a bearer token.",
)
api_key_header = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, description="An API key (POST /api/v1/auth/api-keys)."
)
access_cookie = APIKeyCookie(
    name=ACCESS_COOKIE,
    auto_error=False,
    description=(
        "The browser session's HttpOnly access cookie, set by the login (AUTH_TRANSPORT cookie "
        f"or both); named `__Host-{ACCESS_COOKIE}` wherever it is Secure (everywhere but "
        "development over http on localhost). State-changing requests also send the CSRF "
        f"token in `{CSRF_HEADER}`."
    ),
)


def document_credentials(openapi: dict[str, Any]) -> dict[str, Any]:
    """Add the API key and cookie schemes to the schema, as alternatives wherever the bearer
    scheme is required (every operation that depends on `get_current_principal`)."""
    components = openapi.setdefault("components", {}).setdefault("securitySchemes", {})
    others = (api_key_header, access_cookie)
    for scheme in others:
        components[scheme.scheme_name] = scheme.model.model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
    for path_item in openapi.get("paths", {}).values():
        for operation in path_item.values():
            security = operation.get("security") if isinstance(operation, dict) else None
            if security and {bearer_token.scheme_name: []} in security:
                security.extend(
                    {scheme.scheme_name: []}
                    for scheme in others
                    if {scheme.scheme_name: []} not in security
                )
    return openapi


def install_credential_docs(app: FastAPI) -> None:
    """Make `app.openapi()` (and /openapi.json) document every credential scheme."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        return document_credentials(generate())

    app.openapi = openapi  # type: ignore[method-assign]


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
    """The caller, from the bearer token, else the `X-API-Key` header, else the access cookie;
    401 when none stands for an active account. 403 for a cookie-authenticated state-changing
    request without its CSRF token, and for an API key without the scope of the method."""
    # Read here rather than as dependencies of their own: every node of this chain is paid on
    # each authenticated request (docs/performance.md). The settings are the app's own.
    settings: Settings = request.app.state.settings
    api_key = request.headers.get(API_KEY_HEADER)
    transport = settings.auth_transport
    unsafe = request.method not in SAFE_METHODS
    if token:
        principal = await authenticator.authenticate(token)
        if principal is not None and principal.api_key_id is None:
            # A session's access token in a header: not when sessions live in cookies only.
            principal = None if transport is AuthTransport.COOKIE else principal
    elif api_key:
        principal = await authenticator.authenticate(api_key)
        if principal is not None and principal.api_key_id is None:
            principal = None  # the header carries keys, not access tokens
    elif transport is not AuthTransport.BEARER:
        principal = await _from_cookie(request, settings, authenticator, unsafe=unsafe)
    else:
        raise Unauthorized("Not authenticated")
    if principal is None or not principal.is_active:
        raise Unauthorized("Invalid or expired credentials")
    needed = Scope.WRITE if unsafe else Scope.READ
    if needed not in principal.scopes:
        raise Forbidden(f"This API key lacks the {needed} scope")
    request.state.principal = principal  # rate limits count per account from here on
    set_user_id(str(principal.id))  # error reports name the account
    return principal


async def _from_cookie(
    request: Request, settings: Settings, authenticator: Authenticator, *, unsafe: bool
) -> Principal | None:
    """The session of the access cookie (401 without one); an unsafe method also needs the
    session's CSRF token (403)."""
    secure = cookies_secure(request, settings)
    cookie = request.cookies.get(cookie_name(ACCESS_COOKIE, secure=secure))
    if not cookie:
        raise Unauthorized("Not authenticated")
    principal = await authenticator.authenticate(cookie)
    if principal is None or principal.session_id is None:
        return None  # the cookie carries a session's access token, nothing else
    if unsafe and not csrf_valid(
        settings.secret_key,
        principal.session_id,
        cookie=request.cookies.get(cookie_name(CSRF_COOKIE, secure=secure)),
        header=request.headers.get(CSRF_HEADER),
    ):
        # The cookie came alone: a cross-site form or a script of another origin sent it.
        raise Forbidden("Missing or wrong CSRF token")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_current_principal)]


async def get_active_principal(principal: CurrentPrincipal, settings: SettingsDep) -> Principal:
    """The caller, who must also have verified their email address unless
    AUTH_UNVERIFIED_ACCESS_ALLOWED is set; else 403."""
    if not principal.is_verified and not settings.auth_unverified_access_allowed:
        raise Forbidden("Verify your email address first")
    return principal


ActivePrincipal = Annotated[Principal, Depends(get_active_principal)]


def ensure_signed_in(principal: Principal) -> Principal:
    """403 unless the principal signed in (is not an API key): for what changes credentials or
    sessions (passwords, email, account deletion, keys themselves, logout)."""
    if principal.api_key_id is not None:
        raise Forbidden("API keys cannot be used here: sign in")
    return principal


async def get_signed_in_principal(principal: CurrentPrincipal) -> Principal:
    """The caller, who must have signed in (not an API key); else 403."""
    return ensure_signed_in(principal)


SignedInPrincipal = Annotated[Principal, Depends(get_signed_in_principal)]


def require_role(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that lets through active principals with one of `roles`; else 403."""
    allowed = frozenset(str(role) for role in roles)

    async def dependency(principal: ActivePrincipal) -> Principal:
        if principal.role not in allowed:
            raise Forbidden("You do not have the role this action needs")
        return principal

    return dependency


def require_scope(*scopes: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that lets through active principals holding every one of `scopes` (a
    sign-in session holds them all); else 403."""
    needed = frozenset(str(scope) for scope in scopes)

    async def dependency(principal: ActivePrincipal) -> Principal:
        missing = needed - principal.scopes
        if missing:
            raise Forbidden(f"This API key lacks the scope(s): {', '.join(sorted(missing))}")
        return principal

    return dependency
