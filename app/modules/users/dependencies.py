"""FastAPI dependencies of the users module. Who is calling comes from `app.core.auth`."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Path, Request

from app.core.auth import ActivePrincipal, CurrentPrincipal
from app.core.db import DatabaseDep, DBSession
from app.core.mail import Mailer
from app.core.ratelimit import RateLimits
from app.core.storage import Storage
from app.modules.users.config import UsersSettingsDep
from app.modules.users.models import User
from app.modules.users.schemas import UserDTO, UserOut
from app.modules.users.services import UsersReader, UsersService


async def get_users_service(
    session: DBSession, settings: UsersSettingsDep, limiter: RateLimits, mailer: Mailer
) -> UsersService:
    return UsersService(session, settings, limiter=limiter, mailer=mailer)


UsersServiceDep = Annotated[UsersService, Depends(get_users_service)]


async def get_users_reader(database: DatabaseDep) -> UsersReader:
    return UsersReader(database.engine)


UsersReaderDep = Annotated[UsersReader, Depends(get_users_reader)]

UserIdPath = Annotated[uuid.UUID, Path(description="user id")]


async def get_user_by_id(
    principal: ActivePrincipal, service: UsersServiceDep, user_id: UserIdPath
) -> User:
    """The live user named by the path, if the caller may see it; else a 404 problem, the same
    for an id that does not exist (authentication comes first: anonymous callers get 401)."""
    return await service.get_visible(actor=principal, user_id=user_id)


UserById = Annotated[User, Depends(get_user_by_id)]


async def get_me(principal: CurrentPrincipal, service: UsersServiceDep) -> User:
    """The signed-in user's own record, for changes."""
    return await service.get(user_id=principal.id)


Me = Annotated[User, Depends(get_me)]


async def present(request: Request, user: User | UserDTO) -> UserDTO:
    """A user as the API shows them (`response_model=UserOut`): with a download URL of the
    avatar, good for STORAGE_URL_TTL. A plain function, not a dependency: the lookup is the
    hot path, and a user without an avatar goes out as it is."""
    dto = user if isinstance(user, UserDTO) else UserDTO.model_validate(user)
    if dto.avatar_key is None:
        return dto
    storage: Storage = request.app.state.storage
    ttl: int = request.app.state.settings.storage_url_ttl
    url = await storage.url(dto.avatar_key, expires_in=ttl)
    return UserOut.model_validate({**dto.model_dump(), "avatar_url": url})
