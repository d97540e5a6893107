"""UsersGateway: what other modules may ask of the users module. Returns DTOs, never ORM
objects; injected with FastAPI DI (`UsersGatewayDep`) so tests can replace it."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import Depends
from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import DBSession, Reader
from app.core.errors import NotFound
from app.modules.users.config import UsersSettings, get_users_settings, users_config
from app.modules.users.repositories import UserRepository
from app.modules.users.schemas import UserCreate, UserDTO
from app.modules.users.services import UsersService


class UsersGateway:
    def __init__(self, session: AsyncSession, settings: UsersSettings | None = None) -> None:
        self._service = UsersService(session, settings or get_users_settings())

    async def get_by_id(self, user_id: uuid.UUID) -> UserDTO | None:
        """A live (not deleted) user, active or not."""
        user = await self._service.find(user_id=user_id)
        return None if user is None else UserDTO.model_validate(user)

    async def get_by_email(self, email: str) -> UserDTO | None:
        user = await self._service.find_by_email(email=email)
        return None if user is None else UserDTO.model_validate(user)

    async def get_by_login(self, login: str) -> UserDTO | None:
        """The live user with this email or username (as `authenticate` resolves it)."""
        user = await self._service.find_by_login(login=login)
        return None if user is None else UserDTO.model_validate(user)

    async def create(self, data: UserCreate) -> UserDTO:
        """Raises Conflict for a taken email or username, ValidationFailed for a weak password."""
        return UserDTO.model_validate(await self._service.create(data))

    async def authenticate(self, login: str, password: str) -> UserDTO | None:
        """The live user with this email or username and password, else None (similar timing)."""
        user = await self._service.authenticate(login=login, password=password)
        return None if user is None else UserDTO.model_validate(user)

    async def burn_password_time(self, password: str) -> None:
        """Spend as long as a password check: equalises timing for unknown accounts."""
        await self._service.burn_password_time(password=password)

    async def mark_verified(self, user_id: uuid.UUID) -> UserDTO:
        user = await self._service.get(user_id=user_id)
        await self._service.mark_verified(user=user)
        return UserDTO.model_validate(user)

    async def set_password(self, user_id: uuid.UUID, password: str) -> None:
        """Check and hash the password (no connection held while hashing: call it with no
        unflushed changes) and set it; the caller commits, with its own changes."""
        user = await self._service.find(user_id=user_id)
        if user is None:
            raise NotFound("User not found")
        await self._service.set_password(user=user, password=password)


class UsersDirectory:
    """Read-only questions about users that need no unit of work, answered on the read pool
    (autocommit): cheap enough for every request, which is how authentication asks them.
    Inside a use case, ask `UsersGateway`: it reads within the request's transaction."""

    def __init__(self, reads: Reader) -> None:
        self._reads = reads

    async def get_live(
        self,
        user_id: uuid.UUID,
        *,
        also: ColumnElement[bool] | None = None,
        also_params: Mapping[str, Any] | None = None,
    ) -> UserDTO | None:
        """A live (not deleted) user, active or not.

        `also` is a condition of the caller's own, typically an EXISTS on a table of its
        module, with `also_params` for its bound values: the answer is None unless it holds
        too, and both questions cost one round trip. The statement is compiled once per
        `also` object, so pass a module-level constant."""
        row = await UserRepository().read_live_view(
            self._reads, id=user_id, also=also, also_params=also_params
        )
        return None if row is None else UserDTO.model_validate(row)


async def get_users_gateway(
    session: DBSession, settings: Annotated[UsersSettings, Depends(users_config)]
) -> UsersGateway:
    return UsersGateway(session, settings)


UsersGatewayDep = Annotated[UsersGateway, Depends(get_users_gateway)]
