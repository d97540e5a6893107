"""What other modules may ask of the users module. Answers are DTOs, never ORM objects;
both doors are FastAPI dependencies, so tests can replace them.

- `UsersGateway` works inside the caller's unit of work (the request's session).
- `UsersDirectory` answers read-only questions on an autocommit connection: cheap enough for
  every request, which is how authentication asks who a token's account is.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.core.db import DBConnection, DBSession, utcnow
from app.core.errors import NotFound
from app.core.mail import Mailer, MailService
from app.core.ratelimit import RateLimiter, RateLimits
from app.modules.users.config import UsersSettings, UsersSettingsDep, load_users_settings
from app.modules.users.repositories import UserRepository
from app.modules.users.schemas import UserCreate, UserDTO
from app.modules.users.services import UsersService


class UsersGateway:
    def __init__(
        self,
        session: AsyncSession,
        settings: UsersSettings | None = None,
        *,
        limiter: RateLimiter | None = None,
        mailer: MailService | None = None,
    ) -> None:
        self._service = UsersService(
            session, settings or load_users_settings(), limiter=limiter, mailer=mailer
        )

    async def get_by_id(self, user_id: uuid.UUID) -> UserDTO | None:
        """A live (not deleted) user, active or not."""
        user = await self._service.find(user_id=user_id)
        return None if user is None else UserDTO.model_validate(user)

    async def get_many(self, user_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, UserDTO]:
        """The live (not deleted) users among `user_ids`, active or not, by id: one query
        however many they are (a list of members reads its accounts this way)."""
        users = await self._service.find_many(user_ids=user_ids)
        return {user.id: UserDTO.model_validate(user) for user in users}

    async def get_by_email(self, email: str) -> UserDTO | None:
        user = await self._service.find_by_email(email=email)
        return None if user is None else UserDTO.model_validate(user)

    async def create(self, data: UserCreate) -> UserDTO:
        """Raises EmailTaken or UsernameTaken (409), ValidationFailed for a weak password."""
        return UserDTO.model_validate(await self._service.create(data))

    async def sign_in(self, login: str, password: str, *, client: str) -> UserDTO | None:
        """The live user with this email or username and password, else None (similar
        timing). Every attempt spends the account's password budget (429 when spent); a
        right one gives it back."""
        user = await self._service.sign_in(login=login, password=password, client=client)
        return None if user is None else UserDTO.model_validate(user)

    async def check_password(self, user_id: uuid.UUID, password: str, *, client: str) -> bool:
        """Whether `password` is the live account's; budgeted like a sign-in (429 when
        spent), and run with no connection held."""
        user = await self._service.find(user_id=user_id)
        return user is not None and await self._service.password_matches(
            user, password, client=client
        )

    async def create_verified(self, *, email: str, username_hint: str) -> UserDTO:
        """A verified account with no password (signed in through a provider that vouched for
        the address; a password can be set by reset), its username from `username_hint`.
        Raises EmailTaken (409) when the address has an account."""
        return UserDTO.model_validate(
            await self._service.create_verified(email=email, username_hint=username_hint)
        )

    async def hold_unchanged(self, user: UserDTO) -> bool:
        """Whether the account is still live, active and as `user` was read, its row held until
        the caller commits: a sign-in starts its session only if no password change or
        deactivation came between the check and the session."""
        return await self._service.hold_unchanged(user_id=user.id, updated_at=user.updated_at)

    async def mark_verified(self, user_id: uuid.UUID, email: str) -> bool:
        """Mark the account verified if it still has `email`; the caller commits. False when
        the address changed since the link was mailed, or the account is gone."""
        return await self._service.mark_verified(user_id=user_id, email=email)

    async def set_password(self, user_id: uuid.UUID, password: str) -> None:
        """Check and hash the password (no connection held while hashing: call it with no
        unflushed changes), set it, end every sign-in session and tell the account's address;
        the caller commits, with its own changes."""
        user = await self._service.find(user_id=user_id)
        if user is None:
            raise NotFound("User not found")
        await self._service.set_password(user=user, password=password)


class UsersDirectory:
    """Reads on the caller's connection: several questions, one checkout."""

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection
        self._users = UserRepository()

    async def get(self, user_id: uuid.UUID) -> UserDTO | None:
        """A live (not deleted) user, active or not."""
        row = await self._users.read_live(self._connection, id=user_id)
        return None if row is None else UserDTO.model_validate(row)

    async def get_signed_in(self, user_id: uuid.UUID, session_id: uuid.UUID) -> UserDTO | None:
        """The live user, active or not, while their sign-in session `session_id` is live
        (core's `live_session`): who a session's access token stands for, in one read."""
        row = await self._users.read_signed_in(
            self._connection, id=user_id, session_id=session_id, now=utcnow()
        )
        return None if row is None else UserDTO.model_validate(row)


async def get_users_gateway(
    session: DBSession, settings: UsersSettingsDep, limiter: RateLimits, mailer: Mailer
) -> UsersGateway:
    return UsersGateway(session, settings, limiter=limiter, mailer=mailer)


UsersGatewayDep = Annotated[UsersGateway, Depends(get_users_gateway)]


async def get_users_directory(connection: DBConnection) -> UsersDirectory:
    return UsersDirectory(connection)


UsersDirectoryDep = Annotated[UsersDirectory, Depends(get_users_directory)]
