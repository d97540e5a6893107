"""An account's TOTP secret and its recovery codes."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, String, UniqueConstraint, Uuid, func
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UUIDPrimaryKeyMixin, utcnow


class TwoFactor(Base):
    """One per enrolled (or enrolling) account. Unconfirmed until a first code proves the
    authenticator app has the secret; `last_step` is the TOTP time step of the last code
    accepted: a code of that step or an earlier one is refused (no replay)."""

    __tablename__ = "auth_two_factor"

    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    secret: Mapped[str] = mapped_column(String(64))
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_step: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, server_default=func.now()
    )


class RecoveryCode(UUIDPrimaryKeyMixin, Base):
    """A single-use recovery code, stored as its SHA-256 (it is random, not a password)."""

    __tablename__ = "auth_recovery_codes"
    # Per account: two accounts drawing the same code is no error, and each finds its own.
    __table_args__ = (UniqueConstraint("user_id", "code_hash"),)

    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
