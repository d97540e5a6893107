"""A private stack for the tests that run the template's processes for real: `app serve`,
`app worker`, `app scheduler` and `app outbox relay` on a private PostgreSQL, Redis and SMTP
catcher, each process started in its own session and killed with its children afterwards."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections import Counter

from redis.asyncio import Redis
from sqlalchemy import select

from app.core.config import Settings
from app.core.db import Database
from app.core.embedded import EmbeddedRedis
from app.core.mail.catcher import MailCatcher
from app.core.outbox import OutboxEntry
from tests.conftest import Services, make_settings
from tests.reliability.conftest import PrivatePostgres, Uvicorn, server_env, wait_until
from tests.support import PROJECT_ROOT

APP = str(PROJECT_ROOT / ".venv/bin/app")


class Stack:
    """The private servers, and the processes a test starts on them (stopped afterwards)."""

    def __init__(self, services: Services, postgres: PrivatePostgres, redis: EmbeddedRedis) -> None:
        self.postgres = postgres
        self.redis = redis
        self.catcher = MailCatcher().start()
        self.name = f"stack{uuid.uuid4().hex[:8]}"  # its own queue on the shared Redis
        self.settings: Settings = make_settings(
            services, database_url=postgres.url, redis_url=redis.url, app_name=self.name
        )
        self.database = Database(self.settings)
        self.env = server_env(
            DATABASE_URL=postgres.url,
            REDIS_URL=redis.url,
            APP_NAME=self.name,
            QUEUE_BROKER="redis",
            SMTP_HOST="127.0.0.1",
            SMTP_PORT=str(self.catcher.port),
            SMTP_TIMEOUT="30",
            REDIS_TIMEOUT="0.5",
            REDIS_RETRY_AFTER="0.5",
            OUTBOX_POLL_INTERVAL="0.2",
            QUEUE_RETRY_DELAY="0.2",
            QUEUE_MAX_RETRIES="2",
            QUEUE_REDELIVERY_TIMEOUT="1",
            OUTBOX_REQUEUE_AFTER="60",
            RATE_LIMIT_DEFAULT="100000/minute",
            AUTH_REGISTER_RATE_LIMIT_IP="100000/hour",
            AUTH_EMAIL_RATE_LIMIT="100000/hour",
        )
        self.processes: list[asyncio.subprocess.Process] = []
        self.servers: list[Uvicorn] = []

    async def start(self, *command: str, **env: str) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            *command,
            cwd=PROJECT_ROOT,
            env={**self.env, **env},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,  # its own process group: a worker and its children
        )
        self.processes.append(process)
        return process

    async def worker(self, *command: str, **env: str) -> asyncio.subprocess.Process:
        """`app worker` (or `command`), returned once it reads the queue."""
        known = await self._readers()
        process = await self.start(*(command or (APP, "worker")), **env)
        await wait_until(lambda: self._has_readers(known + 1), within=30, interval=0.1)
        return process

    async def relay(self) -> asyncio.subprocess.Process:
        return await self.start(APP, "outbox", "relay")

    def api(self, *command: str, **env: str) -> Uvicorn:
        environment = {**self.env, **env}
        server = Uvicorn(environment, command=command) if command else Uvicorn(environment)
        self.servers.append(server.start(within=30))
        return server

    async def _readers(self) -> int:
        """Connections reading the queue: a consumer group lists a worker only once it has
        been handed a message, so the clients whose last command was a read are counted."""
        async with Redis.from_url(self.redis.url) as redis:
            clients = await redis.client_list()
        return sum(client["cmd"] in ("xreadgroup", "xautoclaim") for client in clients)

    async def _has_readers(self, count: int) -> bool:
        return await self._readers() >= count

    async def entries(self) -> list[OutboxEntry]:
        async with self.database.sessionmaker() as session:
            query = select(OutboxEntry).order_by(OutboxEntry.id)
            return list((await session.scalars(query)).all())

    def mail_to(self) -> Counter[str]:
        with self.catcher.handler.lock:
            return Counter(str(message["To"]) for message in self.catcher.handler.messages)

    async def close(self) -> None:
        for server in self.servers:
            server.stop()
        for process in self.processes:
            if process.returncode is None:
                os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        self.catcher.stop()
        await self.database.dispose()
