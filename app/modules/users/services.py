"""Use cases of the users module: `UsersService` owns the unit of work (commit) and publishes
events after it; `UsersReader` answers read-only questions on autocommit connections."""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Any

import anyio.to_thread
import structlog
from fastapi import UploadFile
from sqlalchemy import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.core.db import ListParams, Slice, release_connection, utcnow
from app.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from app.core.events import publish
from app.core.mail import MailService
from app.core.ratelimit import RateLimiter, RateLimitState
from app.core.security import PasswordHasher, hash_token, password_hasher
from app.core.sessions import SignInSessions
from app.core.storage import Storage, store_upload
from app.modules.users import policies
from app.modules.users.config import UsersSettings
from app.modules.users.events import UserDeleted, UserPasswordChanged, UserRegistered
from app.modules.users.models import Role, User
from app.modules.users.policies import Actor
from app.modules.users.repositories import UserRepository
from app.modules.users.schemas import UserCreate, UserDTO

_DTO_FIELDS = tuple(UserDTO.model_fields)

log = structlog.get_logger("app.users")
security_log = structlog.get_logger("app.security")

# Names of the unique constraints a registration can run into (the models' naming convention).
_EMAIL_CONSTRAINT = "uq_users_lower_email_live"
_USERNAME_CONSTRAINT = "uq_users_username"


# Not an argon2 hash: no password verifies against it (the account signs in through a provider).
NO_PASSWORD = "!no-password"  # noqa: S105
# A client that gave an account's right password is known to it this long (seconds).
_KNOWN_CLIENT_S = 30 * 86_400
# zxcvbn refuses longer input; the first 72 characters of a longer password are its lower bound.
_STRENGTH_CHECKED_LENGTH = 72


def _strength(password: str, user_inputs: list[str]) -> tuple[int, str]:
    """zxcvbn's score (0-4) and warning; its word lists, megabytes, load on the first call."""
    from zxcvbn import zxcvbn

    verdict = zxcvbn(password[:_STRENGTH_CHECKED_LENGTH], user_inputs=user_inputs)
    return int(verdict["score"]), str(verdict["feedback"]["warning"])


class EmailTaken(Conflict):
    """An account with this email address exists (callers may choose not to say so)."""


class UsernameTaken(Conflict):
    pass


class UsersService:
    """`limiter` counts password attempts; `mailer` tells an account's address about changes
    to it. Use cases that need neither (the `create-superuser` command) may go without."""

    def __init__(
        self,
        session: AsyncSession,
        settings: UsersSettings,
        *,
        limiter: RateLimiter | None = None,
        mailer: MailService | None = None,
    ) -> None:
        self.session = session
        self.settings = settings
        self.limiter = limiter
        self.mailer = mailer
        self.users = UserRepository()
        self.sessions = SignInSessions()

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

    async def find_many(self, *, user_ids: Collection[uuid.UUID]) -> list[User]:
        return await self.users.get_live_many(self.session, ids=user_ids)

    async def find_by_email(self, *, email: str) -> User | None:
        return await self.users.get_by_email(self.session, email=email)

    # --- passwords -------------------------------------------------------------------------

    def _password_budgets(self, account: str, client: str) -> tuple[tuple[str, str, str], ...]:
        """(key, scope, limit) of every budget a password attempt spends: per account and
        client (a guesser elsewhere cannot spend the owner's), and per account from anywhere,
        over a longer window (the ceiling a botnet gets)."""
        return (
            (f"{account}|{client}", "password.client", self.settings.password_attempts_per_client),
            (account, "password.account", self.settings.password_attempts_per_account),
        )

    async def _spend_password_attempt(
        self, account: str, client: str
    ) -> tuple[RateLimitState, ...]:
        """Count the attempt before verifying it, atomically: parallel guesses cannot all pass
        a check made before any of them is counted. 429 when a budget is spent. A client that
        gave this account's right password before is held to its own budget only, so guesses
        from elsewhere cannot lock the owner out of their own device."""
        if self.limiter is None:
            raise RuntimeError("password checks need the rate limiter")
        budgets = self._password_budgets(account, client)
        if await self.limiter.remembers(key=budgets[0][0], scope="password.known"):
            budgets = budgets[:1]
        spent = []
        for key, scope, limit in budgets:
            spent.append(
                await self.limiter.hit(
                    key=key, limit=limit, scope=scope, fail_open=self.limiter.credentials_fail_open
                )
            )
        return tuple(spent)

    async def _refund_password_attempt(
        self, account: str, client: str, spent: tuple[RateLimitState, ...]
    ) -> None:
        assert self.limiter is not None  # spent first
        for state in spent:
            await self.limiter.refund(state)
        key = self._password_budgets(account, client)[0][0]
        await self.limiter.remember(key=key, scope="password.known", seconds=_KNOWN_CLIENT_S)

    async def _password_matches(self, user: User, password: str, *, client: str) -> bool:
        """The password check every flow shares (sign-in, changing the password or the email,
        deleting the account): budgeted, run with no connection held, refunded when right."""
        account = f"user:{user.id}"
        # Neither Redis nor argon2 is waited on with a connection held.
        await release_connection(self.session)
        spent = await self._spend_password_attempt(account, client)
        ok, new_hash = await self.hasher.verify(password, user.password_hash)
        if not ok:
            security_log.warning(
                "password_check_failed", security_event=True, user_id=str(user.id), client=client
            )
            return False
        await self._refund_password_attempt(account, client, spent)
        if new_hash is not None:  # parameters changed since the hash was made: upgrade it
            user.password_hash = new_hash
            await self.session.commit()
        return True

    async def password_matches(self, user: User, password: str, *, client: str) -> bool:
        return await self._password_matches(user, password, client=client)

    async def hold_unchanged(self, *, user_id: uuid.UUID, updated_at: datetime) -> bool:
        return await self.users.hold_unchanged(self.session, id=user_id, updated_at=updated_at)

    async def sign_in(self, *, login: str, password: str, client: str) -> User | None:
        """The live user whose login and password match, else None, in similar time; an
        unknown login spends a budget of its own, so it is refused alike."""
        user = await self.users.get_by_login(self.session, login=login.strip())
        if user is not None:
            return user if await self._password_matches(user, password, client=client) else None
        unknown = f"login:{hash_token(login.strip().lower())}"
        await release_connection(self.session)
        await self._spend_password_attempt(unknown, client)
        await self.hasher.burn(password)
        security_log.warning("sign_in_unknown_account", security_event=True, client=client)
        return None

    async def _check_password_policy(
        self, password: str, *, field: str, username: str, email: str
    ) -> None:
        """Long enough, not a common password, not built from the account's own names."""
        message = None
        own = [name.lower() for name in (username, email.partition("@")[0]) if len(name) >= 3]
        if len(password) < self.settings.password_min_length:
            message = f"must be at least {self.settings.password_min_length} characters long"
        elif any(name in password.lower() for name in own):
            message = "must not contain your username or the name of your email address"
        else:
            score, warning = await anyio.to_thread.run_sync(_strength, password, [*own, email])
            if score < self.settings.password_min_strength:
                message = f"is too weak: {(warning or 'it is too easy to guess').rstrip('.')}"
        if message is not None:
            raise ValidationFailed.at(("body", field), message, detail=f"{field} {message}")

    async def _hash_new_password(
        self, password: str, *, field: str, username: str, email: str
    ) -> str:
        """The policy-checked password's hash, computed with no connection held: argon2 is slow
        by design, and a burst of sign-ups would otherwise drain the pool."""
        await self._check_password_policy(password, field=field, username=username, email=email)
        await release_connection(self.session)
        return await self.hasher.hash(password)

    # --- commands --------------------------------------------------------------------------

    async def _check_unique(
        self, *, email: str | None, username: str | None, exclude: uuid.UUID | None = None
    ) -> None:
        """The username first: registration answers a taken username with a 409 whatever
        the email, so a known username cannot be used to ask whether an email is taken."""
        if username is not None:
            taken = await self.users.get_by_username(self.session, username=username)
            if taken is not None and taken.id != exclude:
                raise UsernameTaken("This username is taken")
        if email is not None:
            found = await self.users.get_by_email(self.session, email=email)
            if found is not None and found.id != exclude:
                raise EmailTaken("A user with this email already exists")

    async def _commit_unique(self) -> None:
        """Commit; a unique violation from a concurrent request becomes the same 409 the
        check before it gives."""
        try:
            await self.session.commit()
        except IntegrityError as error:
            await self.session.rollback()
            constraint = getattr(getattr(error.orig, "diag", None), "constraint_name", None)
            if constraint == _USERNAME_CONSTRAINT:
                raise UsernameTaken("This username is taken") from None
            if constraint == _EMAIL_CONSTRAINT:
                raise EmailTaken("A user with this email already exists") from None
            raise Conflict("A user with this email or username already exists") from None

    async def create(self, data: UserCreate) -> User:
        password_hash = await self._hash_new_password(
            data.password, field="password", username=data.username, email=data.email
        )
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

    async def create_verified(self, *, email: str, username_hint: str) -> User:
        """A verified account without a password: its hash is a value no password matches."""
        await self._check_unique(email=email, username=None)
        base = re.sub(r"[^a-z0-9_.-]", "", username_hint.lower())[:40] or "user"
        username = base if len(base) >= 3 else f"{base}-user"
        while await self.users.get_by_username(self.session, username=username) is not None:
            username = f"{base}-{secrets.token_hex(3)}"
        user = User(
            id=uuid.uuid4(),
            email=email,
            username=username,
            password_hash=NO_PASSWORD,
            role=Role.USER.value,
            is_active=True,
            is_verified=True,
        )
        self.session.add(user)
        publish(
            self.session,
            UserRegistered(user_id=user.id, email=user.email, username=user.username),
        )
        await self._commit_unique()
        log.info("user_registered", user_id=str(user.id), password=False)
        return user

    async def _check_current_password(
        self, user: User, current_password: str | None, *, client: str, purpose: str
    ) -> None:
        """422 when the password is missing, 403 when it is wrong (budgeted as a sign-in)."""
        if current_password is None:
            message = f"is required to {purpose}"
            raise ValidationFailed.at(
                ("body", "current_password"),
                message,
                detail=f"current_password {message}",
                type="missing",
            )
        if not await self._password_matches(user, current_password, client=client):
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
        client: str,
        current_password: str | None = None,
    ) -> User:
        if not policies.can_update(actor, user):
            raise Forbidden("You may not change this user")
        managed = {"role", "is_active", "is_verified"} & changes.keys()
        if managed and not policies.can_manage(actor):
            raise Forbidden("Only administrators may change role, activation or verification")
        if policies.needs_password(actor, user, changes):
            await self._check_current_password(
                user, current_password, client=client, purpose="change your email"
            )
        await self._check_admin_remains(user, changes)
        try:
            # A new username alone is checked by its unique constraint at the commit (the same
            # 409, one statement less); with a new email, both are asked first, username first.
            if "email" in changes:
                await self._check_unique(
                    email=changes["email"], username=changes.get("username"), exclude=user.id
                )
        except EmailTaken:
            # "Taken" tells whether an address has an account here: each such answer costs a
            # password attempt, so asking is bounded by the account's password budget.
            await release_connection(self.session)
            await self._spend_password_attempt(f"user:{user.id}", client)
            raise
        old_email = user.email
        moved = "email" in changes and changes["email"].lower() != old_email.lower()
        if moved:
            changes.setdefault("is_verified", False)
        if "role" in changes:
            changes["role"] = str(changes["role"])
        for name, value in changes.items():
            setattr(user, name, value)
        if changes.get("is_active") is False:  # a deactivated account is signed out everywhere
            await self.session.flush()  # the row locked first: a sign-in under way waits
            await self.sessions.end_all(self.session, user_id=user.id, now=utcnow())
        if moved:  # the old address hears of it, in the same transaction
            self._tell(old_email, "users/email_changed", user, new_email=user.email)
        # No refresh after it: the session keeps what it wrote (expire_on_commit=False), the
        # new version and updated_at included; a read back would be three more round trips.
        await self._commit_unique()
        if moved:
            security_log.info("email_changed", security_event=True, user_id=str(user.id))
        return user

    async def delete(
        self,
        *,
        actor: Actor,
        user: User,
        client: str,
        current_password: str | None = None,
    ) -> None:
        """Soft delete and end every session, in one transaction. Deleting your own account
        needs your password (a stolen access token must not be enough)."""
        if not policies.can_delete(actor, user, self.settings):
            raise Forbidden("You may not delete this user")
        if actor.id == user.id:  # first: the check ends the transaction, and the next one locks
            await self._check_current_password(
                user, current_password, client=client, purpose="delete your account"
            )
        await self._check_admin_remains(user, None)
        await self.users.delete(self.session, user)
        await self.sessions.end_all(self.session, user_id=user.id, now=utcnow())
        publish(self.session, UserDeleted(user_id=user.id))
        await self.session.commit()
        log.info("user_deleted", user_id=str(user.id), by=str(actor.id))

    async def change_password(
        self,
        *,
        user: User,
        current_password: str,
        new_password: str,
        client: str,
        keep_session_id: uuid.UUID | None = None,
    ) -> None:
        """Every other session ends in the same transaction: a thief signed in elsewhere is
        out the moment the change commits, whatever the queue is doing."""
        await self._check_current_password(
            user, current_password, client=client, purpose="change your password"
        )
        await self.set_password(user=user, password=new_password, keep_session_id=keep_session_id)
        await self.session.commit()

    async def set_password(
        self, *, user: User, password: str, keep_session_id: uuid.UUID | None = None
    ) -> None:
        """Check, hash and set a new password, ending every session but `keep_session_id`
        and telling the account's address; the caller commits, with its own changes."""
        user.password_hash = await self._hash_new_password(
            password, field="new_password", username=user.username, email=user.email
        )
        # The row is locked first: a sign-in that checked the old password either commits its
        # session before this and sees it ended below, or waits and finds the account changed.
        await self.session.flush()
        await self.sessions.end_all(
            self.session, user_id=user.id, now=utcnow(), keep=keep_session_id
        )
        publish(self.session, UserPasswordChanged(user_id=user.id, keep_session_id=keep_session_id))
        self._tell(user.email, "users/password_changed", user)
        security_log.info("password_changed", security_event=True, user_id=str(user.id))

    async def set_avatar(self, *, user: User, upload: UploadFile, storage: Storage) -> User:
        """Store an image (sniffed: 415 if it is none of the allowed types; 413 over
        USERS_AVATAR_MAX_BYTES) as the user's avatar; the previous file is deleted once the
        change commits."""
        await release_connection(self.session)  # no connection held while the file moves
        stored = await store_upload(
            storage, upload, prefix="avatars", max_bytes=self.settings.avatar_max_bytes
        )
        previous = user.avatar_key
        user.avatar_key = stored.key
        try:
            await self.session.commit()
        except BaseException:
            await storage.delete(stored.key)  # nobody refers to it
            raise
        if previous is not None:
            await storage.delete(previous)
        log.info("avatar_changed", user_id=str(user.id), size=stored.size)
        return user

    async def remove_avatar(self, *, user: User, storage: Storage) -> User:
        previous = user.avatar_key
        if previous is not None:
            user.avatar_key = None
            await self.session.commit()
            await storage.delete(previous)
        return user

    async def mark_verified(self, *, user_id: uuid.UUID, email: str) -> bool:
        """Mark the account verified if it still has `email` (case aside); the caller commits.
        False when the address changed since (or the account is gone)."""
        return await self.users.mark_verified(self.session, id=user_id, email=email)

    def _tell(self, address: str, template: str, user: User, **context: Any) -> None:
        """Mail an address about a change to its account, through the outbox: it is sent if,
        and only if, the change commits."""
        if self.mailer is None:
            raise RuntimeError("telling an account about a change needs the mailer")
        self.mailer.queue_template(
            self.session,
            to=address,
            template=template,
            context={"username": user.username, **context},
        )


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

    async def list(self, *, actor: Actor, params: ListParams) -> Slice[RowMapping]:
        """A page of users as UserDTO fields, read on a plain connection (a list is read-only:
        no unit of work, no ORM objects)."""
        if not policies.can_list(actor):
            raise Forbidden("Only administrators may list users")
        async with self.engine.connect() as connection:
            return await self.users.read_page(connection, params, columns=_DTO_FIELDS)

    async def view(self, *, actor: Actor, user_id: uuid.UUID) -> UserDTO:
        """The user `actor` asked for; 404 when it is gone and, alike, when they may not see it
        (a stranger learns nothing about which ids exist)."""
        user = await self.get(user_id=user_id) if policies.can_view(actor, user_id) else None
        if user is None:
            raise NotFound("User not found")
        return user
