"""The auth module: registration, sign-in with rotating refresh tokens, email verification,
password reset, and the dependencies other modules authorise requests with.

Public API: everything other modules may import from here. Nothing else of this package is.
"""
# isort: skip_file
# Order matters: the dependencies come first and do not import the users module at import
# time, because the users module's routes import them from here.

from __future__ import annotations

from app.modules.auth.dependencies import (
    ActiveUser,
    CurrentSessionId,
    CurrentUser,
    get_active_user,
    get_current_user,
    require_role,
)
from app.modules.auth.config import AuthSettings

from app.core.modules import ModuleSpec
from app.modules.auth.routes.v1 import router as _router

module = ModuleSpec(name="auth", router=_router, tags=("auth",))

__all__ = [
    "ActiveUser",
    "AuthSettings",
    "CurrentSessionId",
    "CurrentUser",
    "get_active_user",
    "get_current_user",
    "module",
    "require_role",
]
