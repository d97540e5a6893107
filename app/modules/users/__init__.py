"""The users module: accounts, profiles and their administration.

Public API: everything other modules may import from here. Nothing else of this package is.
"""

from __future__ import annotations

from app.core.modules import ModuleSpec
from app.modules.users.admin import UserAdmin as _UserAdmin
from app.modules.users.cli import cli as _cli
from app.modules.users.events import UserDeleted, UserPasswordChanged, UserRegistered
from app.modules.users.gateway import (
    UsersDirectory,
    UsersDirectoryDep,
    UsersGateway,
    UsersGatewayDep,
    get_users_directory,
    get_users_gateway,
)
from app.modules.users.models import Role
from app.modules.users.routes.v1 import router as _router
from app.modules.users.schemas import Email, Password, UserCreate, UserDTO, Username
from app.modules.users.services import EmailTaken, UsernameTaken

# First among the routers: the account lookup is the hot path (docs/performance.md), and a
# request tries the routes included before its own.
module = ModuleSpec(
    name="users",
    router=_router,
    tags=("users",),
    cli=_cli,
    route_order=-1,
    admin_views=(_UserAdmin,),
)

__all__ = [
    "Email",
    "EmailTaken",
    "Password",
    "Role",
    "UserCreate",
    "UserDTO",
    "UserDeleted",
    "UserPasswordChanged",
    "UserRegistered",
    "Username",
    "UsernameTaken",
    "UsersDirectory",
    "UsersDirectoryDep",
    "UsersGateway",
    "UsersGatewayDep",
    "get_users_directory",
    "get_users_gateway",
    "module",
]
