"""Data access for users. Never commits."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import BaseRepository, Reader, ReadQuery
from app.modules.users.models import Role, User
from app.modules.users.schemas import UserDTO


def _live_user_view(also: ColumnElement[bool] | None = None) -> ReadQuery:
    """What a UserDTO shows of a live user (never the password hash), by primary key; and
    `also` (a condition of the caller's), so that one round trip answers both questions."""
    query = select(*(User.__table__.c[name] for name in UserDTO.model_fields)).where(
        User.id == bindparam("id"), User.deleted_at.is_(None)
    )
    return ReadQuery(query if also is None else query.where(also))


_LIVE_USER_VIEW = _live_user_view()
# Compiled once per caller's condition, which is a module-level constant of the caller's:
# keyed by identity (a SQL expression's `==` builds a comparison, it does not compare).
_live_user_views_with: dict[int, tuple[ColumnElement[bool], ReadQuery]] = {}


def _live_user_view_with(also: ColumnElement[bool]) -> ReadQuery:
    cached = _live_user_views_with.get(id(also))
    if cached is None or cached[0] is not also:
        cached = _live_user_views_with[id(also)] = (also, _live_user_view(also))
    return cached[1]


class UserRepository(BaseRepository[User]):
    model = User
    not_found_message = "User not found"

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

    async def read_live_view(
        self,
        reads: Reader,
        *,
        id: uuid.UUID,
        also: ColumnElement[bool] | None = None,
        also_params: Mapping[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """The UserDTO fields of a live user for which `also` holds (with `also_params` for
        its values), on the read pool (no transaction)."""
        if also is None:
            return await reads.fetch_one(_LIVE_USER_VIEW, {"id": id})
        query = _live_user_view_with(also)
        return await reads.fetch_one(query, {**(also_params or {}), "id": id})

    async def get_by_login(self, session: AsyncSession, *, login: str) -> User | None:
        """A live user by email (when the login contains '@') or username."""
        if "@" in login:
            return await self.get_by_email(session, email=login)
        return await self.get_by_username(session, username=login, include_deleted=False)
