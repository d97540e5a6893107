"""Database layer: engine, session and connection dependencies, declarative base and mixins,
repositories, list params."""

from app.core.db.base import (
    MIGRATIONS_LOCK_KEY,
    Base,
    SoftDeleteMixin,
    TimestampMixin,
    UUIDPrimaryKeyMixin,
    utcnow,
)
from app.core.db.engine import (
    Database,
    DatabaseDep,
    DBConnection,
    DBSession,
    get_connection,
    get_database,
    get_session,
    release_connection,
)
from app.core.db.listing import FilterSpec, ListParams, Page, Slice, list_params
from app.core.db.repository import BaseRepository, rows_affected

__all__ = [
    "MIGRATIONS_LOCK_KEY",
    "Base",
    "BaseRepository",
    "DBConnection",
    "DBSession",
    "Database",
    "DatabaseDep",
    "FilterSpec",
    "ListParams",
    "Page",
    "Slice",
    "SoftDeleteMixin",
    "TimestampMixin",
    "UUIDPrimaryKeyMixin",
    "get_connection",
    "get_database",
    "get_session",
    "list_params",
    "release_connection",
    "rows_affected",
    "utcnow",
]
