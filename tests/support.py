"""Helpers shared by tests (not fixtures)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from alembic.config import Config
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import event
from sqlalchemy.engine import make_url
from starlette.types import ASGIApp

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def psycopg_url(url: str) -> str:
    """A libpq URL from any of the accepted DATABASE_URL spellings."""
    _, _, rest = url.partition("://")
    return f"postgresql://{rest}"


def alembic_config(database_url: str) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    config.attributes["database_url"] = f"postgresql+psycopg://{database_url.partition('://')[2]}"
    return config


@contextmanager
def scratch_database(server_url: str, name: str) -> Iterator[str]:
    """A new, empty database on the server of `server_url`, dropped afterwards; its URL.

    The name gets this process's id, so two test runs at once never share one."""
    database = f"{name}_{os.getpid()}"
    with psycopg.connect(psycopg_url(server_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{database}"')
    try:
        yield make_url(server_url).set(database=database).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(psycopg_url(server_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@contextmanager
def sql_statements(app: FastAPI) -> Iterator[list[tuple[str, Any]]]:
    """The SQL statements `app`'s engine sends meanwhile, with their parameters."""
    captured: list[tuple[str, Any]] = []
    engine = app.state.database.engine.sync_engine

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        yield captured
    finally:
        event.remove(engine, "before_cursor_execute", capture)


def http_client(app: ASGIApp) -> AsyncClient:
    """An HTTP client that calls `app` in process (no socket)."""
    return AsyncClient(transport=ASGITransport(app=app), base_url="http://test")


async def queued_work_done(app: FastAPI, *, within: float = 10.0) -> None:
    """Wait until `app`'s outbox has nothing due or in flight, and the in-memory queue has run
    what it was given (tests use QUEUE_BROKER=memory: the app relays to itself)."""
    await app.state.outbox_relay.relay_until_idle(within=within)
