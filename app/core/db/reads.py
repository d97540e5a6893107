"""Hot-path reads: a small autocommit psycopg pool beside the SQLAlchemy engine.

A use case runs in an `AsyncSession` (unit of work, identity map, commit). A read that needs
none of that and runs on every request, such as the checks that authenticate a bearer token,
pays the ORM's and the session's overhead for nothing: measured on the users lookup, two
indexed reads took 2.3 ms through a session and about 0.4 ms here. Queries are still written
with SQLAlchemy Core against the models (`ReadQuery`), compiled once to the driver's SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sqlalchemy import literal_column, select
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect
from sqlalchemy.sql.expression import SelectBase

from app.core.config import Settings

_DIALECT = psycopg_dialect.dialect()  # type: ignore[no-untyped-call]
_RECONNECT_TIMEOUT_S = 5.0


class ReadQuery:
    """A Core `select` compiled once to psycopg's SQL; values are bound by name per call.

    Values go to psycopg as they are (no SQLAlchemy type processing): use types psycopg
    adapts itself (UUID, str, int, bool, datetime...)."""

    __slots__ = ("defaults", "sql")

    def __init__(self, statement: SelectBase) -> None:
        compiled = statement.compile(dialect=_DIALECT)
        self.sql = str(compiled)
        if "__[POSTCOMPILE_" in self.sql:
            # SQLAlchemy renders an expanding parameter (`in_([...])`) only at execution time;
            # the driver would get a placeholder and fail with a syntax error.
            raise ValueError(
                "ReadQuery cannot hold an expanding IN parameter; "
                "compare with any_(bindparam(...)) and pass a list instead"
            )
        # Values fixed in the statement itself (a LIMIT, a literal compared with a column).
        self.defaults = {
            name: value for name, value in compiled.params.items() if value is not None
        }

    def bind(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {**self.defaults, **params} if self.defaults else dict(params)


class Reader(Protocol):
    """Something that runs a `ReadQuery`: the pool (a connection per call) or a `lease`."""

    async def fetch_one(
        self, query: ReadQuery, params: Mapping[str, Any]
    ) -> dict[str, Any] | None: ...


class LeasedReader:
    """One pooled connection for several reads in a row (one checkout instead of several)."""

    __slots__ = ("_connection",)

    def __init__(self, connection: psycopg.AsyncConnection[DictRow]) -> None:
        self._connection = connection

    async def fetch_one(self, query: ReadQuery, params: Mapping[str, Any]) -> dict[str, Any] | None:
        cursor = await self._connection.execute(query.sql, query.bind(params))
        return await cursor.fetchone()


class ReadPool:
    """Autocommit connections for reads that need no transaction; opened by the lifespan.

    Connection failures and pool exhaustion raise psycopg's `OperationalError` or
    `PoolTimeout`, which the error handlers answer with 503 (as they do the engine's)."""

    def __init__(self, settings: Settings) -> None:
        options: dict[str, object] = {
            "autocommit": True,
            "connect_timeout": max(1, int(settings.db_pool_timeout)),
        }
        if settings.db_statement_timeout_ms:
            options["options"] = f"-c statement_timeout={settings.db_statement_timeout_ms}"
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[DictRow]] = AsyncConnectionPool(
            settings.postgres_url,
            min_size=1,
            max_size=settings.db_read_pool_size,
            timeout=settings.db_pool_timeout,
            kwargs={**options, "row_factory": dict_row},
            open=False,
            name="reads",
            # psycopg_pool retries a failed connection with a doubling delay for this long, and
            # meanwhile takes no new attempt: its default (300 s) would keep the pool empty for
            # minutes after the database came back. Giving up sooner lets the next request start
            # a fresh attempt at once.
            reconnect_timeout=_RECONNECT_TIMEOUT_S,
        )
        self._checking: asyncio.Task[None] | None = None

    async def open(self) -> None:
        # Not waiting: the app starts (and /health/ready says why) while the database is down.
        await self._pool.open(wait=False)

    async def close(self) -> None:
        if self._checking is not None:
            self._checking.cancel()
            # Whatever it ended with (cancelled, or a failure of its own) is of no use now.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._checking
        await self._pool.close(timeout=5)

    async def ping(self) -> None:
        await self.fetch_one(_PING, {})

    async def fetch_one(self, query: ReadQuery, params: Mapping[str, Any]) -> dict[str, Any] | None:
        async with self.lease() as reader:
            return await reader.fetch_one(query, params)

    @asynccontextmanager
    async def lease(self) -> AsyncIterator[LeasedReader]:
        try:
            async with self._pool.connection() as connection:
                yield LeasedReader(connection)
        except PoolTimeout:
            raise  # saturated, not broken
        except psycopg.OperationalError:
            self._drop_broken_connections()
            raise

    def _drop_broken_connections(self) -> None:
        """After a failure, test the idle connections (a restarted server left them all
        broken) so the next requests get working ones, not one failure per connection."""
        if self._checking is None or self._checking.done():
            self._checking = asyncio.get_running_loop().create_task(self._pool.check())


_PING = ReadQuery(select(literal_column("1").label("ok")))
