"""Database layer: engine and session, declarative base and mixins, repositories, list params."""

from app.core.db.base import Base, SoftDeleteMixin, TimestampMixin, UUIDPrimaryKeyMixin, utcnow
from app.core.db.engine import (
    Database,
    DBSession,
    get_session,
    read_pool_of,
    release_connection,
)
from app.core.db.listing import FilterSpec, ListParams, Page, list_params
from app.core.db.reads import Reader, ReadPool, ReadQuery
from app.core.db.repository import BaseRepository

__all__ = [
    "Base",
    "BaseRepository",
    "DBSession",
    "Database",
    "FilterSpec",
    "ListParams",
    "Page",
    "ReadPool",
    "ReadQuery",
    "Reader",
    "SoftDeleteMixin",
    "TimestampMixin",
    "UUIDPrimaryKeyMixin",
    "get_session",
    "list_params",
    "read_pool_of",
    "release_connection",
    "utcnow",
]
