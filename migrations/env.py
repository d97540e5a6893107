"""Alembic environment: async engine from Settings, metadata from every discovered module."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.config import get_settings
from app.core.db import MIGRATIONS_LOCK_KEY, Base
from app.core.modules import discover_modules

config = context.config
discover_modules()  # imports each module's models so their tables join Base.metadata
target_metadata = Base.metadata


def _url() -> str:
    return config.attributes.get("database_url") or get_settings().sqlalchemy_url


def _configure(connection: Connection | None = None) -> None:
    context.configure(
        connection=connection,
        url=None if connection is not None else _url(),
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=True,
        literal_binds=connection is None,
    )


def run_migrations_offline() -> None:
    _configure()
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        # Alembic takes no lock: two upgrades at once (several API pods starting, each with its
        # `app migrate upgrade head` init container) would both apply the same migrations. The
        # first holds this lock until its transaction ends; the others wait, then read the
        # version it committed and find nothing to do.
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATIONS_LOCK_KEY})")
        context.run_migrations()


async def run_migrations_online() -> None:
    engine = create_async_engine(_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_sync(connection)
    else:
        asyncio.run(run_migrations_online())
