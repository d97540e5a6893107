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
from collections.abc import Mapping
from types import TracebackType
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
    """One pooled connection, and one cursor on it, for several reads in a row."""

    __slots__ = ("_cursor",)

    def __init__(self, connection: psycopg.AsyncConnection[DictRow]) -> None:
        self._cursor = connection.cursor()

    async def fetch_one(self, query: ReadQuery, params: Mapping[str, Any]) -> dict[str, Any] | None:
        await self._cursor.execute(query.sql, query.bind(params))
        return await self._cursor.fetchone()


class Lease:
    """The async context of `ReadPool.lease()`: a class rather than a generator-based
    context manager (psycopg_pool's own `connection()` is one), because checking a connection
    out and in is on every authenticated request and cost as much as a query that way."""

    __slots__ = ("_connection", "_owner")

    def __init__(self, owner: ReadPool) -> None:
        self._owner = owner
        self._connection: psycopg.AsyncConnection[DictRow] | None = None

    async def __aenter__(self) -> LeasedReader:
        self._connection = await self._owner.pool.getconn()
        return LeasedReader(self._connection)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._connection is not None:
            # A connection left broken is discarded here, and a new one made in its place.
            await self._owner.pool.putconn(self._connection)
            self._connection = None
        if isinstance(exc, psycopg.OperationalError) and not isinstance(exc, PoolTimeout):
            self._owner.drop_broken_connections()


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
        self.pool: AsyncConnectionPool[psycopg.AsyncConnection[DictRow]] = AsyncConnectionPool(
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
        await self.pool.open(wait=False)

    async def close(self) -> None:
        if self._checking is not None:
            self._checking.cancel()
            # Whatever it ended with (cancelled, or a failure of its own) is of no use now.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._checking
        await self.pool.close(timeout=5)

    async def ping(self) -> None:
        await self.fetch_one(_PING, {})

    async def fetch_one(self, query: ReadQuery, params: Mapping[str, Any]) -> dict[str, Any] | None:
        async with self.lease() as reader:
            return await reader.fetch_one(query, params)

    def lease(self) -> Lease:
        """`async with pool.lease() as reader:` several reads on one connection."""
        return Lease(self)

    def drop_broken_connections(self) -> None:
        """After a failure, test the idle connections (a restarted server left them all
        broken) so the next requests get working ones, not one failure per connection."""
        if self._checking is None or self._checking.done():
            self._checking = asyncio.get_running_loop().create_task(self.pool.check())


_PING = ReadQuery(select(literal_column("1").label("ok")))
