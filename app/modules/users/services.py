"""Use cases of the users module: `UsersService` owns the unit of work (commit) and publishes
events after it; `UsersReader` answers read-only questions on autocommit connections."""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.core.db import ListParams, release_connection
from app.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from app.core.events import publish
from app.core.security import PasswordHasher, password_hasher
from app.modules.users import policies
from app.modules.users.config import UsersSettings
from app.modules.users.events import UserDeleted, UserPasswordChanged, UserRegistered
from app.modules.users.models import User
from app.modules.users.policies import Actor
from app.modules.users.repositories import UserRepository
from app.modules.users.schemas import UserCreate, UserDTO

log = structlog.get_logger("app.users")


class UsersService:
    def __init__(self, session: AsyncSession, settings: UsersSettings) -> None:
        self.session = session
        self.settings = settings
        self.users = UserRepository()

    @property
    def hasher(self) -> PasswordHasher:
        return password_hasher(self.settings.hashing)

    # --- queries ---------------------------------------------------------------------------

    async def get(self, *, user_id: uuid.UUID) -> User:
        return await self.users.get(self.session, id=user_id)

    async def get_visible(self, *, actor: Actor, user_id: uuid.UUID) -> User:
        """The user, when `actor` may see it; else the same 404 as for a missing one."""
        user = await self.find(user_id=user_id) if policies.can_view(actor, user_id) else None
        if user is None:
            raise NotFound(self.users.not_found_message)
        return user

    async def find(self, *, user_id: uuid.UUID) -> User | None:
        return await self.users.get_or_none(self.session, id=user_id)

    async def find_by_email(self, *, email: str) -> User | None:
        return await self.users.get_by_email(self.session, email=email)

    async def find_by_login(self, *, login: str) -> User | None:
        return await self.users.get_by_login(self.session, login=login.strip())

    async def list(self, *, actor: Actor, params: ListParams) -> tuple[list[User], int]:
        if not policies.can_list(actor):
            raise Forbidden("Only administrators may list users")
        return await self.users.list(self.session, params)

    async def authenticate(self, *, login: str, password: str) -> User | None:
        """The live user whose login and password match, else None, in similar time."""
        user = await self.users.get_by_login(self.session, login=login.strip())
        await release_connection(self.session)  # argon2 runs with no connection held
        if user is None:
            await self.hasher.burn(password)
            return None
        ok, new_hash = await self.hasher.verify(password, user.password_hash)
        if not ok:
            return None
        if new_hash is not None:  # parameters changed since the hash was made: upgrade it
            user.password_hash = new_hash
            await self.session.commit()
        return user

    async def burn_password_time(self, *, password: str) -> None:
        await release_connection(self.session)  # argon2 runs with no connection held
        await self.hasher.burn(password)

    # --- commands --------------------------------------------------------------------------

    def _check_password_policy(self, password: str, *, field: str = "password") -> None:
        if len(password) < self.settings.password_min_length:
            message = f"must be at least {self.settings.password_min_length} characters long"
            raise ValidationFailed(
                f"{field} {message}",
                errors=[{"loc": ["body", field], "msg": message, "type": "value_error"}],
            )

    async def _check_unique(
        self, *, email: str | None, username: str | None, exclude: uuid.UUID | None = None
    ) -> None:
        if email is not None:
            found = await self.users.get_by_email(self.session, email=email)
            if found is not None and found.id != exclude:
                raise Conflict("A user with this email already exists")
        if username is not None:
            taken = await self.users.get_by_username(self.session, username=username)
            if taken is not None and taken.id != exclude:
                raise Conflict("This username is taken")

    async def _commit_unique(self) -> None:
        """Commit; a unique violation from a concurrent request becomes a 409."""
        try:
            await self.session.commit()
        except IntegrityError:
            await self.session.rollback()
            raise Conflict("A user with this email or username already exists") from None

    async def _hash_new_password(self, password: str, *, field: str = "password") -> str:
        """The policy-checked password's hash, computed with no connection held: argon2 is slow
        by design, and a burst of sign-ups would otherwise drain the pool."""
        self._check_password_policy(password, field=field)
        await release_connection(self.session)
        return await self.hasher.hash(password)

    async def _verify_password(self, user: User, password: str) -> bool:
        await release_connection(self.session)  # argon2 runs with no connection held
        ok, _ = await self.hasher.verify(password, user.password_hash)
        return ok

    async def create(self, data: UserCreate) -> User:
        password_hash = await self._hash_new_password(data.password)
        await self._check_unique(email=data.email, username=data.username)
        user = User(
            id=uuid.uuid4(),
            email=data.email,
            username=data.username,
            password_hash=password_hash,
            role=data.role.value,
            is_active=data.is_active,
            is_verified=data.is_verified,
        )
        self.session.add(user)
        publish(
            self.session,
            UserRegistered(user_id=user.id, email=user.email, username=user.username),
        )
        await self._commit_unique()
        log.info("user_registered", user_id=str(user.id))
        return user

    async def _check_current_password(self, user: User, current_password: str | None) -> None:
        """422 when the password is missing, 403 when it is wrong (as for a password change)."""
        if current_password is None:
            message = "is required to change your email"
            raise ValidationFailed(
                f"current_password {message}",
                errors=[{"loc": ["body", "current_password"], "msg": message, "type": "missing"}],
            )
        if not await self._verify_password(user, current_password):
            raise Forbidden("The current password is wrong")

    async def _check_admin_remains(self, user: User, changes: dict[str, Any] | None) -> None:
        if policies.removes_admin(user, changes) and not policies.can_remove_admin(
            await self.users.count_active_admins(self.session)
        ):
            raise Conflict(
                "This is the last active administrator: make another user an administrator first"
            )

    async def update(
        self,
        *,
        actor: Actor,
        user: User,
        changes: dict[str, Any],
        current_password: str | None = None,
    ) -> User:
        if not policies.can_update(actor, user):
            raise Forbidden("You may not change this user")
        managed = {"role", "is_active", "is_verified"} & changes.keys()
        if managed and not policies.can_manage(actor):
            raise Forbidden("Only administrators may change role, activation or verification")
        if policies.needs_password(actor, user, changes):
            await self._check_current_password(user, current_password)
        await self._check_admin_remains(user, changes)
        await self._check_unique(
            email=changes.get("email"), username=changes.get("username"), exclude=user.id
        )
        if "email" in changes and changes["email"].lower() != user.email.lower():
            changes.setdefault("is_verified", False)
        if "role" in changes:
            changes["role"] = str(changes["role"])
        for name, value in changes.items():
            setattr(user, name, value)
        await self._commit_unique()
        await self.session.refresh(user)
        return user

    async def delete(self, *, actor: Actor, user: User) -> None:
        if not policies.can_delete(actor, user, self.settings):
            raise Forbidden("You may not delete this user")
        await self._check_admin_remains(user, None)
        await self.users.delete(self.session, user)
        publish(self.session, UserDeleted(user_id=user.id))
        await self.session.commit()
        log.info("user_deleted", user_id=str(user.id), by=str(actor.id))

    async def change_password(
        self,
        *,
        user: User,
        current_password: str,
        new_password: str,
        keep_session_id: uuid.UUID | None = None,
    ) -> None:
        if not await self._verify_password(user, current_password):
            raise Forbidden("The current password is wrong")
        await self.set_password(user=user, password=new_password, keep_session_id=keep_session_id)
        await self.session.commit()

    async def set_password(
        self, *, user: User, password: str, keep_session_id: uuid.UUID | None = None
    ) -> None:
        """Check, hash and set a new password; the caller commits, with its own changes."""
        user.password_hash = await self._hash_new_password(password, field="new_password")
        publish(self.session, UserPasswordChanged(user_id=user.id, keep_session_id=keep_session_id))
        log.info("user_password_changed", user_id=str(user.id))

    async def mark_verified(self, *, user: User) -> None:
        if not user.is_verified:
            user.is_verified = True
            await self.session.commit()


class UsersReader:
    """Reads that need no unit of work: each holds an autocommit connection for its statement
    only (no BEGIN, no ROLLBACK, no identity map), so a hot lookup keeps the pool free."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.users = UserRepository()

    async def get(self, *, user_id: uuid.UUID) -> UserDTO | None:
        """A live (not deleted) user, active or not."""
        async with self.engine.connect() as connection:
            row = await self.users.read_live(connection, id=user_id)
        return None if row is None else UserDTO.model_validate(row)

    async def view(self, *, actor: Actor, user_id: uuid.UUID) -> UserDTO:
        """The user `actor` asked for; 404 when it is gone and, alike, when they may not see it
        (a stranger learns nothing about which ids exist)."""
        user = await self.get(user_id=user_id) if policies.can_view(actor, user_id) else None
        if user is None:
            raise NotFound("User not found")
        return user
