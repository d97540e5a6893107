"""The raw baseline: plain Starlette + a psycopg pool, no FastAPI, no framework extras.

It serves the same endpoints as the template (`/health/live`, an authenticated user lookup by
primary key, the users list by page number, by cursor and filtered, and PATCH /users/me), with
the same JWT checks and the same SQL, so the difference is the template's cost.
"""

from __future__ import annotations

import base64
import json
import math
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import jwt
import orjson
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
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
pool: AsyncConnectionPool[AsyncConnection[DictRow]] = AsyncConnectionPool(
    os.environ["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://"),
    min_size=POOL_SIZE,
    max_size=POOL_SIZE,
    open=False,
    connection_class=AsyncConnection[DictRow],
    kwargs={"row_factory": dict_row},
)
LIVE = orjson.dumps({"status": "ok"})
# The list's statements as the template sends them (sort -created_at, total exact to 10,000).
EXACT_TOTAL_LIMIT = 10_000
LIST_COLUMNS = (
    "id, email, username, password_hash, is_active, is_verified, role, version, "
    "created_at, updated_at, deleted_at"
)
UPDATE_ME = (
    "UPDATE users SET username = %s, updated_at = now(), version = version + 1 "
    "WHERE id = %s AND version = %s AND deleted_at IS NULL "
    "RETURNING id, email, username, role, is_active, is_verified, created_at, updated_at"
)


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


def _claims(request: Request) -> dict[str, object] | None:
    auth = request.headers.get("authorization", "")
    if not auth.startswith("Bearer "):
        return None
    try:
        claims: dict[str, object] = jwt.decode(
            auth[7:], SECRET_KEY, algorithms=["HS256"], issuer=ISSUER, audience=AUDIENCE
        )
    except jwt.PyJWTError:
        return None
    return claims


def _cursor(row: DictRow, backward: bool) -> str:
    values = [row["created_at"].isoformat(), str(row["id"])]
    payload = {"s": "-created_at", "k": ["created_at", "id"], "v": values, "b": backward}
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def users_list(request: Request) -> Response:
    """GET /api/v1/users?sort=-created_at: capped count, planner estimate, one page."""
    if _claims(request) is None:
        return Response(b'{"detail":"unauthorized"}', 401, media_type="application/json")
    query = request.query_params
    per_page = int(query.get("per_page", "20"))
    page = int(query.get("page", "1"))
    # Fixed SQL fragments, the values bound: the same statements as the template's.
    where, args = ["deleted_at IS NULL"], list[object]()
    if "filter[role]" in query:
        where.append("role = %s")
        args.append(query["filter[role]"])
    if "filter[created_at][gte]" in query:
        where.append("created_at >= %s")
        args.append(query["filter[created_at][gte]"])
    condition = " AND ".join(where)
    page_where, page_args, offset = condition, list(args), (page - 1) * per_page
    cursor = query.get("cursor")
    if cursor:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        page_where += " AND (created_at, id) < (%s, %s)"
        page_args += [data["v"][0], uuid.UUID(data["v"][1])]
        offset = 0
    async with pool.connection() as conn:
        # The planner's estimate first; a capped count only when it is not clearly large.
        plan = await (
            await conn.execute(
                f"EXPLAIN (FORMAT JSON) SELECT 1 FROM users WHERE {condition}",  # noqa: S608
                args,
            )
        ).fetchone()
        estimate = int(plan["QUERY PLAN"][0]["Plan"]["Plan Rows"]) if plan else 0
        total, exact = estimate, False
        if estimate <= 2 * EXACT_TOTAL_LIMIT:
            counted = await (
                await conn.execute(
                    f"SELECT count(*) AS n FROM (SELECT 1 FROM users WHERE {condition} "  # noqa: S608
                    f"LIMIT {EXACT_TOTAL_LIMIT + 1}) AS rows",
                    args,
                )
            ).fetchone()
            total = counted["n"] if counted else 0
            exact = total <= EXACT_TOTAL_LIMIT
            if not exact:
                total = max(estimate, EXACT_TOTAL_LIMIT + 1)
        rows = await (
            await conn.execute(
                f"SELECT {LIST_COLUMNS} FROM users WHERE {page_where} "  # noqa: S608
                "ORDER BY created_at DESC, id DESC LIMIT %s OFFSET %s",
                [*page_args, per_page + 1, offset],
            )
        ).fetchall()
    more = len(rows) > per_page
    items = [
        {key: row[key] for key in ("id", "email", "username", "role", "is_active", "is_verified",
                                   "created_at", "updated_at")}
        for row in rows[:per_page]
    ]  # fmt: skip
    body = {
        "items": items,
        "total": total,
        "total_is_exact": exact,
        "page": None if cursor else page,
        "per_page": per_page,
        "pages": math.ceil(total / per_page),
        "next_cursor": _cursor(rows[per_page - 1], False) if more else None,
        "prev_cursor": _cursor(rows[0], True) if rows and (cursor or page > 1) else None,
    }
    return Response(orjson.dumps(body, default=str), media_type="application/json")


async def update_me(request: Request) -> Response:
    """PATCH /api/v1/users/me: read the user, one optimistic-lock UPDATE, in a transaction
    (the template's statements, less its authentication read; a taken username is left to the
    unique constraint, as there)."""
    claims = _claims(request)
    if claims is None:
        return Response(b'{"detail":"unauthorized"}', 401, media_type="application/json")
    username = orjson.loads(await request.body())["username"]
    user_id = uuid.UUID(str(claims["sub"]))
    async with pool.connection() as conn, conn.transaction():
        current = await (
            await conn.execute(
                "SELECT version FROM users WHERE id = %s AND deleted_at IS NULL", (user_id,)
            )
        ).fetchone()
        if current is None:
            return Response(b'{"detail":"not found"}', 404, media_type="application/json")
        row = await (
            await conn.execute(UPDATE_ME, (username, user_id, current["version"]))
        ).fetchone()
    if row is None:
        return Response(b'{"detail":"conflict"}', 409, media_type="application/json")
    return Response(orjson.dumps(row, default=str), media_type="application/json")


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    await pool.open(wait=True)
    yield
    await pool.close()


app = Starlette(
    routes=[
        Route("/health/live", live),
        Route("/api/v1/users", users_list),
        Route("/api/v1/users/me", update_me, methods=["PATCH"]),
        Route("/api/v1/users/{user_id}", user),
    ],
    lifespan=lifespan,
)
