"""Organizations (the tenants), their memberships and their invitations.

These tables are the tenancy itself, asked before any organization is current (which
organizations am I in? whose invitation is this token?), so they are not tenant-owned: the
repositories filter them explicitly. Data that belongs to an organization uses `TenantOwned`.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, SoftDeleteMixin, TimestampMixin, UUIDPrimaryKeyMixin


class OrgRole(enum.StrEnum):
    MEMBER = "member"
    ADMIN = "admin"
    OWNER = "owner"


class Organization(UUIDPrimaryKeyMixin, TimestampMixin, SoftDeleteMixin, Base):
    """Soft-deleted first (no member can reach it), purged with its data later."""

    __tablename__ = "organizations"

    name: Mapped[str] = mapped_column(String(100))
    # Unique while the organization exists, deleted or not: a purge frees it.
    slug: Mapped[str] = mapped_column(String(50), unique=True)


class Membership(UUIDPrimaryKeyMixin, TimestampMixin, Base):
    __tablename__ = "memberships"
    __table_args__ = (
        UniqueConstraint("organization_id", "user_id"),
        CheckConstraint("role IN ('member', 'admin', 'owner')", name="role_known"),
        # One owner per organization: transfers swap it in one transaction.
        Index(
            "uq_memberships_one_owner",
            "organization_id",
            unique=True,
            postgresql_where=text("role = 'owner'"),
        ),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("organizations.id", ondelete="CASCADE")
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(10))


class Invitation(UUIDPrimaryKeyMixin, TimestampMixin, Base):
    __tablename__ = "invitations"
    __table_args__ = (
        CheckConstraint("role IN ('member', 'admin')", name="role_known"),
        # One open invitation per address and organization (resend renews it).
        Index(
            "uq_invitations_open_email",
            "organization_id",
            text("lower(email)"),
            unique=True,
            postgresql_where=text("accepted_at IS NULL AND revoked_at IS NULL"),
        ),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(10))
    # The link's single-use token is never stored, only its SHA-256.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    invited_by_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL")
    )
    accepted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
