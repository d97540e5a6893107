from __future__ import annotations

from sqlalchemy import Column, String, Table, UniqueConstraint, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.core.db import TimestampMixin, UUIDPrimaryKeyMixin
from app.core.tenancy import TenantOwned


class NoteBase(DeclarativeBase):
    """Separate metadata: the notes table is test-only and must not reach migrations."""


# The migrated organizations table, known to this metadata only so the foreign key resolves.
Table("organizations", NoteBase.metadata, Column("id", Uuid, primary_key=True))


class Note(UUIDPrimaryKeyMixin, TimestampMixin, TenantOwned, NoteBase):
    __tablename__ = "test_notes"
    __table_args__ = (UniqueConstraint("organization_id", "title"),)

    title: Mapped[str] = mapped_column(String(100))
