"""The User model."""

from __future__ import annotations

import enum

from sqlalchemy import CheckConstraint, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, SoftDeleteMixin, TimestampMixin, UUIDPrimaryKeyMixin


class Role(enum.StrEnum):
    USER = "user"
    ADMIN = "admin"


_LIVE = text("deleted_at IS NULL")


class User(UUIDPrimaryKeyMixin, TimestampMixin, SoftDeleteMixin, Base):
    __tablename__ = "users"
    __table_args__ = (
        # Unique among live users, whatever the case: a soft-deleted user's email is free again.
        Index(
            "uq_users_lower_email_live",
            text("lower(email)"),
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
        ),
        CheckConstraint("role IN ('user', 'admin')", name="role_known"),
        # The list's sorts and selective filters, each served by one index range scan on a
        # large table (the id is the sort's tie-breaker and the cursor's last key). Partial:
        # lists show live users only. (username sorts on its unique index.)
        *(
            Index(f"ix_users_{'_'.join(keys)}_live", *keys, "id", postgresql_where=_LIVE)
            for keys in (("created_at",), ("updated_at",), ("email",), ("role",))
        ),
        Index("ix_users_role_created_at_live", "role", "created_at", "id", postgresql_where=_LIVE),
    )

    email: Mapped[str] = mapped_column(String(320))
    username: Mapped[str] = mapped_column(String(50), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(default=True, server_default=text("true"))
    is_verified: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    # The stored file of the avatar (app.core.storage), a key the app made; never a client's name.
    avatar_key: Mapped[str | None] = mapped_column(String(200), default=None)
    role: Mapped[str] = mapped_column(
        String(20), default=Role.USER.value, server_default=Role.USER.value
    )
    # Optimistic locking: every UPDATE checks and bumps it, so of two requests that read the
    # same version only the first write lands; the other gets a 409 instead of overwriting it.
    version: Mapped[int] = mapped_column(Integer, server_default=text("1"))

    __mapper_args__ = {"version_id_col": version}

    def __repr__(self) -> str:  # never shows the password hash
        return f"User(id={self.id!s}, username={self.username!r}, role={self.role!r})"
