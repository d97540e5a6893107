"""The smallest FastAPI app that reads a user three ways: not at all, through a psycopg pool,
through the SQLAlchemy async engine (autocommit). `python -m bench.engine_cost` serves it."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from fastapi import FastAPI, Response
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import bindparam, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from app.modules.users.models import User

URL = os.environ["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
POOL_SIZE = int(os.environ.get("DB_POOL_SIZE", "16"))
SQL = (
    "SELECT id, email, username, role, is_active, is_verified, created_at, updated_at "
    "FROM users WHERE id = %s AND deleted_at IS NULL"
)
QUERY = select(
    User.id,
    User.email,
    User.username,
    User.role,
    User.is_active,
    User.is_verified,
    User.created_at,
    User.updated_at,
).where(User.id == bindparam("id"), User.deleted_at.is_(None))

pool = AsyncConnectionPool(
    URL,
    min_size=POOL_SIZE,
    max_size=POOL_SIZE,
    open=False,
    kwargs={"row_factory": dict_row, "autocommit": True},
)
engine = create_async_engine(
    "postgresql+psycopg://" + URL.partition("://")[2],
    pool_size=POOL_SIZE,
    max_overflow=0,
    isolation_level="AUTOCOMMIT",
)
user_id: uuid.UUID | None = None


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    global user_id
    await pool.open(wait=True)
    async with engine.connect() as connection:
        user_id = await connection.scalar(text("SELECT id FROM users LIMIT 1"))
    yield
    await pool.close()
    await engine.dispose()


app = FastAPI(lifespan=lifespan)


@app.get("/none")
async def none() -> Response:
    return Response(b'{"ok": true}', media_type="application/json")


@app.get("/driver")
async def driver() -> Response:
    async with pool.connection() as connection:
        row = await (await connection.execute(SQL, (user_id,))).fetchone()
    return Response(orjson.dumps(row), media_type="application/json")


@app.get("/engine")
async def engine_read() -> Response:
    async with engine.connect() as connection:
        row = (await connection.execute(QUERY, {"id": user_id})).mappings().one()
    return Response(orjson.dumps(dict(row.items())), media_type="application/json")
