"""The async engine (psycopg 3), and the two ways a request reaches the database through it:
a session for a use case (`DBSession`) and a connection for reads that need no unit of work
(`DBConnection`). One engine, one pool."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from taskiq import TaskiqDepends

from app.core.config import Settings


class Database:
    """Owns the engine and the session factory; opened and closed by the app's lifespan."""

    def __init__(self, settings: Settings) -> None:
        connect_args: dict[str, object] = {"connect_timeout": max(1, int(settings.db_pool_timeout))}
        # Server-side bounds: a runaway statement, and a transaction left open and idle (it would
        # hold its pooled connection and its row locks) are ended by PostgreSQL itself.
        timeouts = {
            "statement_timeout": settings.db_statement_timeout_ms,
            "idle_in_transaction_session_timeout": settings.db_idle_in_transaction_timeout_ms,
        }
        options = " ".join(f"-c {name}={value}" for name, value in timeouts.items() if value)
        if settings.db_role:  # act as a role that owns no table: row-level security applies
            options = f"{options} -c role={settings.db_role}".strip()
        if options:
            connect_args["options"] = options
        # Autocommit unless a session's transaction is open: `engine.begin()` on this engine
        # is not a transaction (each statement commits); use a session, or
        # `engine.execution_options(isolation_level="READ COMMITTED").begin()`.
        self.engine: AsyncEngine = create_async_engine(
            settings.sqlalchemy_url,
            # A read on a plain connection is just itself: no BEGIN and ROLLBACK around it.
            isolation_level="AUTOCOMMIT",
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
        # Use cases run in transactions: the same engine and pool, read committed.
        self.transactional_engine = self.engine.execution_options(isolation_level="READ COMMITTED")
        self.sessionmaker = async_sessionmaker(
            self.transactional_engine, expire_on_commit=False, autoflush=False
        )

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


async def get_database(request: Request = TaskiqDepends()) -> Database:
    database: Database = request.app.state.database
    return database


DatabaseDep = Annotated[Database, Depends(get_database)]


# `= TaskiqDepends()` lets tasks resolve it too (`bind_app` gives them the app).
async def get_session(request: Request = TaskiqDepends()) -> AsyncIterator[AsyncSession]:
    """One session per request (or task); rolled back if the handler did not commit."""
    async with request.app.state.database.sessionmaker() as session:
        yield session


DBSession = Annotated[AsyncSession, Depends(get_session)]


async def get_connection(request: Request) -> AsyncIterator[AsyncConnection]:
    """An autocommit connection for Core reads that need no transaction; back in the pool as
    soon as the path operation returns (`scope="function"`), before the response is sent."""
    async with request.app.state.database.engine.connect() as connection:
        yield connection


DBConnection = Annotated[AsyncConnection, Depends(get_connection, scope="function")]


async def release_connection(session: AsyncSession) -> None:
    """End the session's transaction so its pooled connection goes back to the pool before
    slow work that is not the database (password hashing, SMTP, HTTP).

    Only reads may be outstanding: anything already flushed is committed with them, and
    unflushed changes are refused. Loaded objects stay usable (`expire_on_commit=False`) and
    the next query begins a new transaction."""
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("release_connection() with unflushed changes; commit them first")
    await session.commit()
