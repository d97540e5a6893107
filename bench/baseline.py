"""The raw baseline: plain Starlette + a psycopg pool, no FastAPI, no framework extras.

It serves the same two endpoints as the template (`/health/live` and an authenticated user
lookup by primary key, with the same JWT checks) so the difference is the template's cost.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import jwt
import orjson
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

SECRET_KEY = os.environ["SECRET_KEY"]
ISSUER = os.environ.get("AUTH_JWT_ISSUER", "app")
AUDIENCE = os.environ.get("AUTH_JWT_AUDIENCE", "app-api")
POOL_SIZE = int(os.environ.get("DB_POOL_SIZE", "10"))
USER_QUERY = (
    "SELECT id, email, username, role, is_active, is_verified, created_at, updated_at "
    "FROM users WHERE id = %s AND deleted_at IS NULL"
)
pool = AsyncConnectionPool(
    os.environ["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://"),
    min_size=POOL_SIZE,
    max_size=POOL_SIZE,
    open=False,
    kwargs={"row_factory": dict_row},
)
LIVE = orjson.dumps({"status": "ok"})


async def live(request: Request) -> Response:
    return Response(LIVE, media_type="application/json")


async def user(request: Request) -> Response:
    auth = request.headers.get("authorization", "")
    if not auth.startswith("Bearer "):
        return Response(b'{"detail":"unauthorized"}', 401, media_type="application/json")
    try:
        jwt.decode(auth[7:], SECRET_KEY, algorithms=["HS256"], issuer=ISSUER, audience=AUDIENCE)
        user_id = uuid.UUID(request.path_params["user_id"])
    except (jwt.PyJWTError, ValueError):
        return Response(b'{"detail":"unauthorized"}', 401, media_type="application/json")
    async with pool.connection() as conn:
        cursor = await conn.execute(USER_QUERY, (user_id,))
        row = await cursor.fetchone()
    if row is None:
        return Response(b'{"detail":"not found"}', 404, media_type="application/json")
    return Response(orjson.dumps(row, default=str), media_type="application/json")


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    await pool.open(wait=True)
    yield
    await pool.close()


app = Starlette(
    routes=[Route("/health/live", live), Route("/api/v1/users/{user_id}", user)],
    lifespan=lifespan,
)
