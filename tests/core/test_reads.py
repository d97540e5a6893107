"""The hot-path read pool: Core queries compiled once, autocommit connections, 503 when down."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import psycopg
import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import any_, bindparam, literal_column, select

from app.core.db import ReadPool, ReadQuery
from app.core.security import encode_jwt
from app.modules.auth.config import get_auth_settings
from app.modules.users.models import User
from tests.conftest import Services, make_settings
from tests.factories.users import create_user

DEAD_DATABASE = "postgresql://postgres@127.0.0.1:1/none"  # nothing listens on port 1


def test_a_read_query_keeps_the_statements_own_values_and_binds_the_rest() -> None:
    query = ReadQuery(select(User.id).where(User.username == bindparam("name")).limit(5))
    assert "%(name)s" in query.sql
    assert query.bind({"name": "ada"}) == {"name": "ada", "param_1": 5}
    unbounded = ReadQuery(select(User.id).where(User.id == bindparam("id")))
    assert unbounded.bind({"id": 1}) == {"id": 1}


def test_a_read_query_refuses_an_expanding_in_which_the_driver_could_not_run() -> None:
    with pytest.raises(ValueError, match="any_"):
        ReadQuery(select(User.id).where(User.role.in_(["admin", "user"])))
    # The form that works: one array parameter.
    query = ReadQuery(select(User.id).where(User.role == any_(bindparam("roles"))))
    assert "ANY (%(roles)s" in query.sql


@pytest.fixture
async def reads(services: Services) -> AsyncIterator[ReadPool]:
    pool = ReadPool(make_settings(services, db_read_pool_size=2))
    await pool.open()
    try:
        yield pool
    finally:
        await pool.close()


BACKEND = ReadQuery(
    select(
        literal_column("pg_backend_pid()").label("pid"),
        literal_column("current_setting('transaction_isolation')").label("isolation"),
        literal_column("now() = statement_timestamp()").label("own_transaction"),
    )
)


async def test_reads_run_outside_any_transaction_and_a_lease_keeps_one_connection(
    reads: ReadPool,
) -> None:
    async with reads.lease() as reader:
        first = await reader.fetch_one(BACKEND, {})
        second = await reader.fetch_one(BACKEND, {})
    assert first is not None
    assert second is not None
    assert first["pid"] == second["pid"]
    # Autocommit: every statement is its own transaction (now() is the statement's time).
    assert first["own_transaction"] is True


async def test_reads_see_committed_rows_and_answer_none_for_missing_ones(
    app: FastAPI, reads: ReadPool
) -> None:
    async with app.state.database.sessionmaker() as session:
        user = await create_user(session, username="reader")
    query = ReadQuery(select(User.username).where(User.id == bindparam("id")))
    assert await reads.fetch_one(query, {"id": user.id}) == {"username": "reader"}
    assert await reads.fetch_one(query, {"id": uuid.uuid4()}) is None
    by_roles = ReadQuery(select(User.username).where(User.role == any_(bindparam("roles"))))
    assert await reads.fetch_one(by_roles, {"roles": ["admin", "user"]}) == {"username": "reader"}
    assert await reads.fetch_one(by_roles, {"roles": ["admin"]}) is None


async def test_an_unreachable_database_fails_within_the_pool_timeout(
    services: Services,
) -> None:
    pool = ReadPool(make_settings(services, database_url=DEAD_DATABASE, db_pool_timeout=1))
    await pool.open()
    try:
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError):
            await pool.fetch_one(BACKEND, {})
        assert time.monotonic() - started < 3
    finally:
        await pool.close()


async def test_a_statement_error_reaches_the_caller_and_the_connection_stays_usable(
    reads: ReadPool,
) -> None:
    broken = ReadQuery(select(literal_column("1 / 0").label("x")))
    with pytest.raises(psycopg.errors.DivisionByZero):
        await reads.fetch_one(broken, {})
    assert await reads.fetch_one(BACKEND, {}) is not None


@pytest.fixture
async def unreachable_reads(app: FastAPI, services: Services) -> AsyncIterator[None]:
    """The app's read pool swapped for one whose database never answers."""
    down = ReadPool(make_settings(services, database_url=DEAD_DATABASE, db_pool_timeout=1))
    await down.open()
    working, app.state.database.reads = app.state.database.reads, down
    try:
        yield
    finally:
        app.state.database.reads = working
        await down.close()


@pytest.mark.usefixtures("unreachable_reads")
async def test_the_api_answers_503_problem_when_the_read_pool_cannot_connect(
    app: FastAPI, client: AsyncClient
) -> None:
    response = await client.get(
        "/api/v1/users/me", headers={"Authorization": "Bearer " + _access_token(app)}
    )
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "5"


@pytest.mark.usefixtures("unreachable_reads")
async def test_readiness_fails_when_the_read_pool_cannot_reach_the_database(
    client: AsyncClient,
) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "fail", "redis": "ok"}


def _access_token(app: FastAPI) -> str:
    """A well-signed access token: authentication gets as far as its database reads."""
    auth = get_auth_settings()
    return encode_jwt(
        {"sub": str(uuid.uuid4()), "sid": str(uuid.uuid4()), "typ": "access", "role": "user"},
        key=app.state.settings.secret_key,
        issuer=auth.jwt_issuer,
        audience=auth.jwt_audience,
        ttl=timedelta(minutes=5),
    )
