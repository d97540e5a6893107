"""Factories for the users module's model."""

from __future__ import annotations

from typing import Any

from factory.base import Factory
from factory.declarations import Sequence
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy.ext.asyncio import AsyncSession

from app.modules.users.models import Role, User

DEFAULT_PASSWORD = "correct-horse-battery"
# Cheap argon2id parameters, as the tests configure (tests/modules/conftest.py).
_hasher = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1),))
DEFAULT_PASSWORD_HASH = _hasher.hash(DEFAULT_PASSWORD)


class UserFactory(Factory[User]):
    class Meta:
        model = User

    email = Sequence(lambda n: f"user{n}@example.com")  # type: ignore[no-untyped-call]
    username = Sequence(lambda n: f"user{n}")  # type: ignore[no-untyped-call]
    password_hash = DEFAULT_PASSWORD_HASH
    is_active = True
    is_verified = True
    role = Role.USER.value


async def create_user(session: AsyncSession, **overrides: Any) -> User:
    """Build a user with the factory, store and commit it."""
    if "password" in overrides:
        overrides["password_hash"] = _hasher.hash(overrides.pop("password"))
    user: User = UserFactory.build(**overrides)
    session.add(user)
    await session.commit()
    return user
