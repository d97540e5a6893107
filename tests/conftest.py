"""Test session: real PostgreSQL and Redis (TEST_*_URL when set, embedded otherwise), a fresh
database built by migrations, one app for the session, and a clean slate for every test."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import psycopg
import pytest
import time_machine
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from httpx import AsyncClient
from redis.asyncio import Redis
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from app.core.config import Environment, Settings
from app.core.db import Base
from app.core.embedded import EmbeddedRedis, start_postgres
from app.core.mail.catcher import CatchingHandler, MailCatcher, message_links
from app.main import create_app
from tests.support import (
    PROJECT_ROOT,
    alembic_config,
    http_client,
    psycopg_url,
    queued_work_done,
)

TEST_DATABASE = "app_test"
_CATCHERS: dict[int, CatchingHandler] = {}
TEST_SECRET = "test-secret-key-that-is-long-enough-for-hs256-0123456789"
# The run's own DATA_DIR (stored files): two runs at once never share it.
RUN_DATA_DIR = PROJECT_ROOT / ".data" / "test" / f"run-{os.getpid()}"


@dataclass(frozen=True)
class Services:
    database_url: str
    redis_url: str
    smtp_port: int = 0

    def redis_db(self, number: int) -> str:
        """The same Redis server, another database: for a run that must not share keys."""
        return self.redis_url.rsplit("/", 1)[0] + f"/{number}"


def _reset_schema(database_url: str) -> None:
    with psycopg.connect(psycopg_url(database_url), autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")


def _drop_database(database_url: str) -> None:
    url = make_url(database_url)
    with psycopg.connect(psycopg_url(database_url.replace(f"/{url.database}", "/postgres", 1)),
                         autocommit=True) as conn:  # fmt: skip
        conn.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    """TEST_DATABASE_URL / TEST_REDIS_URL when set; otherwise the embedded servers, with a
    database and a Redis of this run's own, so two runs at once never share state."""
    data_dir = PROJECT_ROOT / ".data" / "test"
    embedded_redis: EmbeddedRedis | None = None
    run_database = f"{TEST_DATABASE}_{os.getpid()}"
    database_url = os.environ.get("TEST_DATABASE_URL") or start_postgres(
        data_dir / "postgres", database=run_database
    )
    redis_url = os.environ.get("TEST_REDIS_URL")
    if not redis_url:
        embedded_redis = EmbeddedRedis(data_dir / f"redis-{os.getpid()}")
        redis_url = embedded_redis.start()

    from alembic import command

    _reset_schema(database_url)
    if not os.environ.get("TEST_DATABASE_URL"):
        # The run's own database: its commits need not wait for the disk (a crashed test run
        # keeps nothing anyway), which most tests, committing often, spend much of their time on.
        with psycopg.connect(psycopg_url(database_url), autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{run_database}" SET synchronous_commit = off')
    config = alembic_config(database_url)
    command.upgrade(config, "head")
    catcher = MailCatcher().start()
    _CATCHERS[catcher.port] = catcher.handler
    try:
        yield Services(database_url=database_url, redis_url=redis_url, smtp_port=catcher.port)
    finally:
        catcher.stop()
        if embedded_redis is not None:
            embedded_redis.stop()
            shutil.rmtree(embedded_redis.data_dir, ignore_errors=True)
        if not os.environ.get("TEST_DATABASE_URL"):
            _drop_database(database_url)
        shutil.rmtree(RUN_DATA_DIR, ignore_errors=True)


def make_settings(services: Services, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "app_env": Environment.TEST,
        "database_url": services.database_url,
        "redis_url": services.redis_url,
        "secret_key": TEST_SECRET,
        "log_level": "WARNING",
        "db_pool_size": 5,
        "db_max_overflow": 5,
        # Tasks run in-process; mail goes to the session's catcher (see `mail_outbox`).
        "queue_broker": "memory",
        "queue_retry_delay": 0,
        "outbox_poll_interval": 0.2,
        "smtp_host": "127.0.0.1",
        "smtp_port": services.smtp_port,
        "rate_limit_default": "10000/minute",
        # Tests that fake a Redis outage leave no circuit open for the next test (the fault
        # tests set their own).
        "redis_retry_after": 0,
        "data_dir": str(RUN_DATA_DIR),
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-protocol server (moto's) on loopback, in a thread of this process."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def settings(services: Services) -> Settings:
    return make_settings(services)


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with LifespanManager(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    async with http_client(app) as http:
        yield http


@pytest.fixture
async def session(app: FastAPI) -> AsyncIterator[AsyncSession]:
    async with app.state.database.sessionmaker() as db_session:
        yield db_session


@pytest.fixture
async def redis(app: FastAPI) -> Redis:
    client: Redis = app.state.redis
    return client


class MailOutbox(list[EmailMessage]):
    """The messages the test catcher received during this test, oldest first."""

    def __init__(self, handler: CatchingHandler) -> None:
        super().__init__()
        self._handler = handler

    def _sync(self) -> None:
        with self._handler.lock:
            self[:] = self._handler.messages

    async def wait(self, count: int = 1, *, within: float = 3.0) -> EmailMessage:
        """Wait until `count` messages arrived (queued mail included: the app's relay sends
        the outbox to the in-memory queue as entries commit); return the last one."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            self._sync()
            if len(self) >= count:
                return self[count - 1]
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"expected {count} message(s), got {len(self)}")
            await asyncio.sleep(0.01)

    def arrived(self) -> list[EmailMessage]:
        """Every message received so far."""
        self._sync()
        return list(self)

    def links(self, message: EmailMessage | None = None) -> list[str]:
        """The links in `message` (default: the last message received)."""
        self._sync()
        return message_links(message if message is not None else self[-1])

    def fail_next(self, count: int = 1) -> None:
        """Make the catcher answer the next `count` messages with a temporary SMTP failure."""
        with self._handler.lock:
            self._handler.fail_next = count


@pytest.fixture(scope="session")
def _mail_handler(services: Services) -> CatchingHandler:
    return _CATCHERS[services.smtp_port]


@pytest.fixture
def mail_outbox(_mail_handler: CatchingHandler) -> Iterator[MailOutbox]:
    """Mail sent (or queued) during the test: `await mail_outbox.wait()`, `.links()`."""
    with _mail_handler.lock:
        _mail_handler.messages.clear()
        _mail_handler.fail_next = 0
    outbox = MailOutbox(_mail_handler)
    yield outbox
    with _mail_handler.lock:
        _mail_handler.messages.clear()
        _mail_handler.fail_next = 0


@pytest.fixture(scope="session")
def owner_engine(services: Services) -> Iterator[AsyncEngine]:
    """The database as the owner of its tables (as migrations run): for the fixtures that
    truncate or create tables, which the app's role (DB_ROLE, owns no table) may not."""
    engine = create_async_engine(
        f"postgresql+psycopg://{services.database_url.partition('://')[2]}", pool_size=1
    )
    yield engine
    engine.sync_engine.dispose(close=False)  # the server goes away with the test database


@pytest.fixture(autouse=True)
async def _clean_slate(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Every test starts with empty tables and an empty Redis, whatever ran before it."""
    if "app" not in request.fixturenames:
        yield
        return
    owner: AsyncEngine = request.getfixturevalue("owner_engine")
    yield
    application: FastAPI = request.getfixturevalue("app")
    # Queued work of the test (a mail task) ends before the tables do.
    await queued_work_done(application)
    # DELETE, children first: on a test's few rows it is several times faster than TRUNCATE,
    # which replaces every table's files (the ids are not restarted; no test relies on them).
    async with owner.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            await connection.execute(table.delete())
    await application.state.redis.flushdb()


@pytest.fixture
def one_rate_window() -> Iterator[None]:
    """Run the test inside one minute of the fixed-window rate limits: the clock jumps to the
    start of the next minute and ticks on from there, so requests a test counts against a
    limit cannot fall on both sides of a window's end (a count that starts again mid-test)."""
    now = time.time()
    with time_machine.travel(now - now % 60 + 60, tick=True):
        yield


def pytest_configure(config: pytest.Config) -> None:
    # The tests decide every setting themselves; a developer's .env must not leak in.
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    Path(PROJECT_ROOT / ".data").mkdir(exist_ok=True)
