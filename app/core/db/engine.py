"""The async engine (psycopg 3) and the one-session-per-request dependency."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from taskiq import TaskiqDepends

from app.core.config import Settings
from app.core.db.reads import ReadPool


class Database:
    """Owns the engine, the session factory and the hot-path read pool; opened and closed by
    the app's lifespan."""

    def __init__(self, settings: Settings) -> None:
        connect_args: dict[str, object] = {"connect_timeout": max(1, int(settings.db_pool_timeout))}
        if settings.db_statement_timeout_ms:
            connect_args["options"] = f"-c statement_timeout={settings.db_statement_timeout_ms}"
        self.engine: AsyncEngine = create_async_engine(
            settings.sqlalchemy_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            # Short waits: under overload a request fails fast with 503 instead of piling up.
            pool_timeout=settings.db_pool_timeout,
            # No pre-ping round trip per checkout: a dropped connection invalidates the pool
            # on first use (that request gets a 503) and the next checkout reconnects.
            pool_recycle=1800,
            echo=settings.db_echo,
            connect_args=connect_args,
        )
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)
        self.reads = ReadPool(settings)

    async def open(self) -> None:
        await self.reads.open()

    async def ping(self) -> None:
        """Both ways to the database answer: the engine's pool and the read pool."""
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        await self.reads.ping()

    async def dispose(self) -> None:
        await self.reads.close()
        await self.engine.dispose()


async def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


# `= TaskiqDepends()` lets tasks resolve it too (taskiq-fastapi supplies the Request).
async def get_session(request: Request = TaskiqDepends()) -> AsyncIterator[AsyncSession]:
    """One session per request (or task); rolled back if the handler did not commit."""
    async with request.app.state.database.sessionmaker() as session:
        yield session


DBSession = Annotated[AsyncSession, Depends(get_session)]


async def release_connection(session: AsyncSession) -> None:
    """End the session's transaction so its pooled connection goes back to the pool before
    slow work that is not the database (password hashing, SMTP, HTTP).

    Only reads may be outstanding: anything already flushed is committed with them, and
    unflushed changes are refused. Loaded objects stay usable (`expire_on_commit=False`) and
    the next query begins a new transaction."""
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("release_connection() with unflushed changes; commit them first")
    await session.commit()


def read_pool_of(request: Request) -> ReadPool:
    """The app's read pool. Called inside a dependency, not declared as one: on the hot path
    each FastAPI dependency costs about as much as a read."""
    reads: ReadPool = request.app.state.database.reads
    return reads
