"""The auth module: registration, sign-in with rotating refresh tokens, two-factor (TOTP) and
social (OAuth 2.0 / OpenID Connect) sign-in, email verification, password reset, and the
authenticator behind core's `CurrentPrincipal`.

Public API: everything other modules may import from here. Nothing else of this package is.
"""

from __future__ import annotations

from app.core.modules import ModuleSpec
from app.modules.auth.admin import AuthAdminSignIn
from app.modules.auth.authenticator import TokenAuthenticator
from app.modules.auth.config import AuthSettings
from app.modules.auth.routes import router as _router

module = ModuleSpec(
    name="auth",
    router=_router,
    tags=("auth",),
    authenticator=TokenAuthenticator,
    admin_sign_in=AuthAdminSignIn,
)

__all__ = ["AuthSettings", "TokenAuthenticator", "module"]
