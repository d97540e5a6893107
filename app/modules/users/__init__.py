"""The users module: accounts, profiles and their administration.

Public API: everything other modules may import from here. Nothing else of this package is.
"""
# isort: skip_file

from __future__ import annotations

# Order matters: the gateway, DTOs and events come before the routes, because the routes
# import `app.modules.auth`, which itself imports the gateway from here.
from app.modules.users.events import UserDeleted, UserPasswordChanged, UserRegistered
from app.modules.users.gateway import (
    UsersDirectory,
    UsersGateway,
    UsersGatewayDep,
    get_users_gateway,
)
from app.modules.users.models import Role
from app.modules.users.schemas import UserCreate, UserDTO

from app.core.modules import ModuleSpec
from app.modules.users.cli import cli as _cli
from app.modules.users.routes.v1 import router as _router

module = ModuleSpec(name="users", router=_router, tags=("users",), cli=_cli)

__all__ = [
    "Role",
    "UserCreate",
    "UserDTO",
    "UserDeleted",
    "UserPasswordChanged",
    "UserRegistered",
    "UsersDirectory",
    "UsersGateway",
    "UsersGatewayDep",
    "get_users_gateway",
    "module",
]
