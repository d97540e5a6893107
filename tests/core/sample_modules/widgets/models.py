from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.core.db import SoftDeleteMixin, TimestampMixin, UUIDPrimaryKeyMixin


class WidgetBase(DeclarativeBase):
    """Separate metadata: the widgets table is test-only and must not reach migrations."""


class Widget(UUIDPrimaryKeyMixin, TimestampMixin, SoftDeleteMixin, WidgetBase):
    __tablename__ = "test_widgets"

    name: Mapped[str] = mapped_column(String(50))
    colour: Mapped[str] = mapped_column(String(20))
    size: Mapped[int]
    made_at: Mapped[datetime | None] = mapped_column(default=None)
