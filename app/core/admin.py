"""The admin panel at /admin (sqladmin): sign-in with the app's own accounts, the admin role
required; the views are the ones modules declare (`ModuleSpec(admin_views=...)`).

- Sign-in goes through the module that provides `ModuleSpec(admin_sign_in=...)` (the auth
  module): the same checks as the API's sign-in (password budgets, deactivated and unverified
  accounts), and a sign-in session that a logout-all, a password change or a deactivation
  ends. The panel's cookie holds that session's tokens; every request asks core's
  `Authenticator` who they stand for, so a deactivated or demoted admin is out at once.
- CSRF: the session cookie is SameSite=Strict and HttpOnly (Secure in production), and every
  unsafe request must come from this origin (`Origin`, else `Referer`): sqladmin's forms carry
  no token of their own.
- Every change is logged (`admin_change`) with the admin's id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import structlog
from fastapi import FastAPI, Request
from sqladmin import Admin
from sqladmin.audit import AuditBackend, AuditEntry
from sqladmin.authentication import AuthenticationBackend, get_current_user_id
from sqlalchemy.ext.asyncio import async_sessionmaker
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.auth import Principal
from app.core.config import Settings
from app.core.db import Database

if TYPE_CHECKING:
    from app.core.modules import ModuleSpec

ADMIN_URL = "/admin"
ADMIN_ROLE = "admin"
SESSION_COOKIE = "admin_session"
# Templates that stand in for sqladmin's own of the same name (the sign-in form).
TEMPLATES = Path(__file__).parent / "admin_templates"
# The panel's cookie ends after this long, whatever the sign-in session's own lifetime.
SESSION_MAX_AGE = 8 * 3600
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

log = structlog.get_logger("app.admin")
security_log = structlog.get_logger("app.security")


@dataclass(frozen=True, slots=True)
class AdminCredentials:
    """The tokens of a sign-in session the panel acts in."""

    access_token: str
    refresh_token: str


class AdminSignIn(Protocol):
    """Provided by the module that owns sign-in (the auth module)."""

    async def sign_in(
        self, *, login: str, password: str, code: str | None, client: str
    ) -> AdminCredentials | None:
        """Check the credentials as the API's sign-in does (`code`: the second factor's, when
        the account has one) and start a sign-in session; None when they are refused, whatever
        the reason."""
        ...

    async def refresh(self, *, refresh_token: str) -> AdminCredentials | None:
        """Renew the session's tokens; None when the session is over."""
        ...

    async def sign_out(self, principal: Principal) -> None:
        """End the sign-in session."""
        ...


# Called with the running app (its state holds the database, the limiter, the mailer).
AdminSignInFactory = Callable[[FastAPI], AdminSignIn]


def record_change(
    request: Request, *, action: str, identity: str, pk: Any, changes: dict[str, Any] | None
) -> None:
    """One log line per change made in the panel, with the admin who made it."""
    fields = sorted(changes) if changes else []
    log.info(
        "admin_change",
        admin_id=str(get_current_user_id(request)),
        action=action,
        view=identity,
        pk=str(pk),
        fields=fields,
        changes={name: str(value) for name, value in (changes or {}).items()},
    )


class AuditLog(AuditBackend):
    """sqladmin's audit hook: the changes views make through sqladmin itself."""

    async def log(self, entry: AuditEntry, request: Request) -> None:
        record_change(
            request, action=entry.action, identity=entry.identity, pk=entry.pk,
            changes=entry.changes,
        )  # fmt: skip


class AdminAuth(AuthenticationBackend):
    def __init__(self, app: FastAPI, sign_in: AdminSignIn, settings: Settings) -> None:
        super().__init__(
            secret_key=settings.secret_key,
            session_cookie=SESSION_COOKIE,
            max_age=SESSION_MAX_AGE,
            path=ADMIN_URL,
            same_site="strict",
            https_only=settings.is_production,
        )
        self.app = app
        self.sign_in = sign_in

    async def _principal(self, token: str | None) -> Principal | None:
        if not token:
            return None
        principal = await self.app.state.authenticator.authenticate(token)
        if principal is None or not principal.is_active:
            return None
        assert isinstance(principal, Principal)
        return principal

    async def login(self, request: Request) -> bool:
        form = await request.form()
        login, password = str(form.get("username", "")), str(form.get("password", ""))
        code = str(form.get("code", "")).strip() or None
        client = self.app.state.rate_limiter.address_key(request)
        credentials = await self.sign_in.sign_in(
            login=login, password=password, code=code, client=client
        )
        principal = await self._principal(credentials.access_token if credentials else None)
        if credentials is None or principal is None or principal.role != ADMIN_ROLE:
            if principal is not None:  # right password, wrong role: the session is not kept
                await self.sign_in.sign_out(principal)
            security_log.warning("admin_sign_in_refused", security_event=True, client=client)
            return False
        request.session.clear()  # a new session, not one an attacker may have planted
        request.session.update(
            token=credentials.access_token,
            refresh=credentials.refresh_token,
            user_id=str(principal.id),
        )
        log.info("admin_signed_in", admin_id=str(principal.id))
        return True

    async def logout(self, request: Request) -> bool:
        principal = await self._principal(request.session.get("token"))
        if principal is not None:
            await self.sign_in.sign_out(principal)
        request.session.clear()
        return True

    async def authenticate(self, request: Request) -> bool:
        principal = await self._principal(request.session.get("token"))
        refresh = request.session.get("refresh")
        if principal is None and refresh:  # the access token expired: renew it
            credentials = await self.sign_in.refresh(refresh_token=refresh)
            if credentials is not None:
                request.session.update(
                    token=credentials.access_token, refresh=credentials.refresh_token
                )
                principal = await self._principal(credentials.access_token)
        if principal is None or principal.role != ADMIN_ROLE:
            request.session.clear()
            return False
        request.state.principal = principal  # the views act for this admin
        return True


class SameOriginMiddleware:
    """Refuses (403) unsafe requests that do not come from a page of this origin: the `Origin`
    header (or, without one, the `Referer`) must name the host the request was sent to."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in UNSAFE_METHODS:
            headers = {name.decode("latin-1"): value.decode("latin-1")
                       for name, value in scope["headers"]}  # fmt: skip
            source = headers.get("origin") or headers.get("referer") or ""
            if not source or urlsplit(source).netloc != headers.get("host"):
                security_log.warning(
                    "admin_cross_origin_refused", security_event=True, origin=source[:200]
                )
                response = PlainTextResponse("Cross-origin request refused", status_code=403)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def mount_admin(app: FastAPI, settings: Settings, modules: Iterable[ModuleSpec]) -> Admin | None:
    """The panel at /admin with every module's views, when ADMIN_ENABLED allows it and a
    module provides the sign-in. Its sessions bind to the app's engine at start-up
    (`bind_admin`)."""
    modules = list(modules)
    providers = [spec.admin_sign_in for spec in modules if spec.admin_sign_in is not None]
    if not settings.serves_admin or not providers:
        return None
    if len(providers) > 1:
        raise RuntimeError("more than one module provides the admin sign-in")
    admin = Admin(
        app,
        session_maker=async_sessionmaker(expire_on_commit=False, autoflush=False),
        base_url=ADMIN_URL,
        title=f"{settings.app_name} admin",
        authentication_backend=AdminAuth(app, providers[0](app), settings),
        audit_backend=AuditLog(),
        templates_dir=str(TEMPLATES),  # the sign-in form with its two-factor code field
        middlewares=[Middleware(SameOriginMiddleware)],
    )
    for spec in modules:
        for view in spec.admin_views:
            # sqladmin sets the session maker on the view class: a subclass per app keeps two
            # apps in one process (the tests) from sharing it.
            admin.add_view(type(view.__name__, (view,), {}))
    app.state.admin = admin
    return admin


def bind_admin(app: FastAPI, database: Database) -> None:
    """Point the panel's sessions at the app's engine (one pool), once it exists."""
    admin: Admin | None = getattr(app.state, "admin", None)
    if admin is not None:
        admin.session_maker.configure(bind=database.transactional_engine)
