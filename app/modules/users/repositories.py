"""Data access for users: ORM queries in a unit of work, and Core reads on a connection.
Never commits."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime

from sqlalchemy import RowMapping, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.core.db import BaseRepository, rows_affected, utcnow
from app.core.sessions import live_session
from app.modules.users.models import Role, User
from app.modules.users.schemas import UserDTO

# What a UserDTO shows of a live user (never the password hash), by primary key: one
# statement, so SQLAlchemy compiles it once and psycopg prepares it on the server.
_LIVE_USER_BY_ID = select(*(User.__table__.c[name] for name in UserDTO.model_fields)).where(
    User.id == bindparam("id"), User.deleted_at.is_(None)
)
# The same, only while the given sign-in session of the user is live: authentication's one
# read per request.
_SIGNED_IN_USER = _LIVE_USER_BY_ID.where(
    live_session(bindparam("session_id"), User.id, bindparam("now"))
)


class UserRepository(BaseRepository[User]):
    model = User
    not_found_message = "User not found"

    async def read_live(self, connection: AsyncConnection, *, id: uuid.UUID) -> RowMapping | None:
        """The UserDTO fields of a live user, outside any unit of work."""
        result = await connection.execute(_LIVE_USER_BY_ID, {"id": id})
        return result.mappings().first()

    async def read_signed_in(
        self,
        connection: AsyncConnection,
        *,
        id: uuid.UUID,
        session_id: uuid.UUID,
        now: datetime,
    ) -> RowMapping | None:
        """The UserDTO fields of a live user whose sign-in session `session_id` is live."""
        result = await connection.execute(
            _SIGNED_IN_USER, {"id": id, "session_id": session_id, "now": now}
        )
        return result.mappings().first()

    async def get_live_many(
        self, session: AsyncSession, *, ids: Collection[uuid.UUID]
    ) -> list[User]:
        """The live users among `ids`, in one query (none for no ids)."""
        if not ids:
            return []
        query = self._base_query().where(User.id.in_(ids))
        return list((await session.execute(query)).scalars())

    async def get_by_email(self, session: AsyncSession, *, email: str) -> User | None:
        query = self._base_query().where(func.lower(User.email) == email.lower())
        return (await session.execute(query)).scalar_one_or_none()

    async def get_by_username(
        self, session: AsyncSession, *, username: str, include_deleted: bool = True
    ) -> User | None:
        query = self._base_query(include_deleted=include_deleted).where(
            User.username == username.lower()
        )
        return (await session.execute(query.limit(1))).scalar_one_or_none()

    async def get_by_login(self, session: AsyncSession, *, login: str) -> User | None:
        """A live user by email (when the login contains '@') or username."""
        if "@" in login:
            return await self.get_by_email(session, email=login)
        return await self.get_by_username(session, username=login, include_deleted=False)

    async def hold_unchanged(
        self, session: AsyncSession, *, id: uuid.UUID, updated_at: datetime
    ) -> bool:
        """Whether the live, active user is as it was read (`updated_at`), its row share-locked
        until the transaction ends: a change to it (a new password) waits for the caller."""
        query = (
            select(User.id)
            .where(
                User.id == id,
                User.updated_at == updated_at,
                User.is_active.is_(True),
                User.deleted_at.is_(None),
            )
            .with_for_update(read=True)
        )
        return (await session.execute(query)).first() is not None

    async def mark_verified(self, session: AsyncSession, *, id: uuid.UUID, email: str) -> bool:
        """Verified, if the live user still has `email` (case aside): one statement."""
        result = await session.execute(
            update(User)
            .where(
                User.id == id,
                func.lower(User.email) == email.lower(),
                User.deleted_at.is_(None),
            )
            .values(is_verified=True, version=User.version + 1, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return bool(rows_affected(result))

    async def count_active_admins(self, session: AsyncSession) -> int:
        """The live, active administrators, their rows locked until the transaction ends: two
        concurrent demotions of the last two administrators cannot both pass the count."""
        query = (
            self._base_query()
            .with_only_columns(User.id)
            .where(User.role == Role.ADMIN.value, User.is_active.is_(True))
            .with_for_update()
        )
        return len((await session.execute(query)).all())
