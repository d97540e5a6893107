"""Reliability suite (issue #9): the feature modules' fixtures, and helpers to run private
servers (PostgreSQL, Redis, uvicorn) that the tests may stop and start at will."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import psycopg
import pytest
from alembic import command

# The users/auth fixtures (cheap argon2id, admin, bearer...) are shared with tests/modules.
from app.core.embedded import EmbeddedRedis, stop_process
from tests.conftest import Services
from tests.modules.conftest import (
    Headers,
    admin,
    admin_headers,
    bearer,
    login,
    make_user,
    user,
    user_headers,
)
from tests.support import PROJECT_ROOT, alembic_config

if TYPE_CHECKING:
    from tests.reliability.stack import Stack

__all__ = [
    "Headers",
    "PrivatePostgres",
    "admin",
    "admin_headers",
    "bearer",
    "free_port",
    "login",
    "make_user",
    "private_postgres",
    "private_redis",
    "stack",
    "user",
    "user_headers",
    "wait_until",
]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


async def wait_until(predicate: object, *, within: float, interval: float = 0.05) -> float:
    """Await `predicate()` (sync or async) until it is true; return the seconds it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        result = predicate()  # type: ignore[operator]
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return loop.time() - start
        if loop.time() - start > within:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(interval)


def server_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env.update({"APP_ENV": "test", "LOG_LEVEL": "WARNING"})
    env.update(values)
    return env


class Uvicorn:
    """`app serve` as a real server process on a free loopback port."""

    def __init__(
        self,
        env: dict[str, str],
        *,
        cwd: Path = PROJECT_ROOT,
        command: tuple[str, ...] = (str(PROJECT_ROOT / ".venv/bin/app"), "serve"),
    ) -> None:
        self.port = free_port()
        self.env = {**env, "SERVER_HOST": "127.0.0.1", "SERVER_PORT": str(self.port)}
        self.cwd = cwd
        self.command = command
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, within: float = 20) -> Uvicorn:
        self.process = subprocess.Popen(
            list(self.command),
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"app serve exited: {error[-2000:]}")
            if port_open(self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("app serve did not listen in time")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
        self.process = None


def uvicorn_server(env: dict[str, str]) -> Iterator[Uvicorn]:
    server = Uvicorn(env).start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class PrivatePostgres:
    server: Any
    url: str

    def stop(self) -> None:
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

        server = self.server
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)

    def start(self) -> None:
        self.server.ensure_postgres_running()


def _private_dir(prefix: str) -> Generator[Path, None, None]:
    """A directory of this run's own (pytest's numbered tmp dirs can collide between two
    concurrent runs), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=f"reliability-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    import pgserver

    directory = _private_dir("pg")
    server = pgserver.get_server(  # type: ignore[attr-defined]
        str(next(directory) / "data"), cleanup_mode="delete"
    )
    server.psql('CREATE DATABASE "faults";')
    host = server.get_uri().partition("?")[2].removeprefix("host=")
    url = f"postgresql://postgres@/faults?host={quote(host)}"
    command.upgrade(alembic_config(url), "head")
    try:
        yield PrivatePostgres(server, url)
    finally:
        server.cleanup()
        directory.close()


@pytest.fixture(scope="module")
def private_redis() -> Iterator[EmbeddedRedis]:
    directory = _private_dir("redis")
    redis = EmbeddedRedis(next(directory))
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()
        directory.close()


@pytest.fixture
async def stack(
    services: Services, private_postgres: PrivatePostgres, private_redis: EmbeddedRedis
) -> AsyncIterator[Stack]:
    """A private stack whose processes the test starts (`tests/reliability/stack.py`)."""
    from tests.reliability.stack import Stack

    running = Stack(services, private_postgres, private_redis)
    # As the tables' owner: the app's role (DB_ROLE) may not truncate.
    with psycopg.connect(private_postgres.url, autocommit=True) as connection:
        connection.execute("TRUNCATE outbox_entries, users CASCADE")
    try:
        yield running
    finally:
        await running.close()
