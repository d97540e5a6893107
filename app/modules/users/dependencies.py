"""FastAPI dependencies of the users module."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Path

from app.core.db import DBSession
from app.modules.auth import ActiveUser, CurrentUser
from app.modules.users.config import UsersSettings, users_config
from app.modules.users.models import User
from app.modules.users.services import UsersService

UsersConfig = Annotated[UsersSettings, Depends(users_config)]


async def get_users_service(session: DBSession, settings: UsersConfig) -> UsersService:
    return UsersService(session, settings)


UsersServiceDep = Annotated[UsersService, Depends(get_users_service)]


UserIdPath = Annotated[uuid.UUID, Path(description="user id")]


async def get_user_by_id(actor: ActiveUser, service: UsersServiceDep, user_id: UserIdPath) -> User:
    """The live user named by the path, or a 404 problem. Authentication comes first, so an
    anonymous caller learns nothing about which ids exist."""
    return await service.get(user_id=user_id)


async def get_me(actor: CurrentUser, service: UsersServiceDep) -> User:
    return await service.get(user_id=actor.id)


UserById = Annotated[User, Depends(get_user_by_id)]
Me = Annotated[User, Depends(get_me)]
