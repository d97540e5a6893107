"""One engine, two ways in: a session's unit of work is a real transaction, a connection's
read is a statement of its own (autocommit)."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from sqlalchemy import select, text

from app.core.db import release_connection
from app.modules.users.models import User
from tests.factories.users import UserFactory


async def test_a_session_writes_nothing_visible_until_it_commits(app: FastAPI) -> None:
    database = app.state.database
    async with database.sessionmaker() as session:
        session.add(UserFactory.build(username="pending"))
        await session.flush()
        async with database.engine.connect() as other:
            seen = await other.scalar(select(User.id).where(User.username == "pending"))
            assert seen is None  # flushed inside the session's transaction, not committed
        await session.rollback()
    async with database.engine.connect() as other:
        assert await other.scalar(select(User.id).where(User.username == "pending")) is None


async def test_each_statement_on_a_connection_is_its_own_transaction(app: FastAPI) -> None:
    # now() is the start of the current transaction: it moves between two statements only
    # when each runs in a transaction of its own.
    database = app.state.database
    async with database.engine.connect() as connection:
        first = await connection.scalar(text("SELECT now()"))
        await connection.execute(text("SELECT pg_sleep(0.01)"))
        second = await connection.scalar(text("SELECT now()"))
    assert second > first
    async with database.sessionmaker() as session:
        first = await session.scalar(text("SELECT now()"))
        await session.execute(text("SELECT pg_sleep(0.01)"))
        second = await session.scalar(text("SELECT now()"))
    assert second == first


async def test_release_connection_refuses_unflushed_changes(app: FastAPI) -> None:
    async with app.state.database.sessionmaker() as session:
        session.add(UserFactory.build(username="unsaved"))
        with pytest.raises(RuntimeError, match="unflushed changes"):
            await release_connection(session)
        await session.rollback()
