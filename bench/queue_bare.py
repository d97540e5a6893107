"""Bare taskiq: the same Redis-stream broker (taskiq-redis), the same probe task, enqueued by a
bare Starlette endpoint. No middlewares, no result backend, no app.

    uvicorn bench.queue_bare:app             # the endpoint, POST /enqueue
    taskiq worker bench.queue_bare:broker    # the worker
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from taskiq_redis import RedisStreamBroker

from bench.queue_probe import record_start

broker = RedisStreamBroker(url=os.environ["REDIS_URL"], queue_name="bench:bare:tasks")


@broker.task(task_name="bench.bare_probe")
async def probe(enqueued_at: float) -> None:
    await record_start(enqueued_at)


async def enqueue(request: Request) -> Response:
    await probe.kiq(time.time())
    return Response(status_code=202)


async def live(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    await broker.startup()
    yield
    await broker.shutdown()


app = Starlette(
    routes=[Route("/enqueue", enqueue, methods=["POST"]), Route("/health/live", live)],
    lifespan=lifespan,
)
