"""The template's processes with what the scale-out tests observe them by, run as
`python -m tests.reliability.scale_out_processes serve|worker|scheduler` with the app's
environment:

- `serve`: `app serve`'s app plus a cached read (`GET /test/cache/{key}`, computed once per
  key and cached in Redis) and its invalidation (`DELETE /test/cache/{key}`);
- `worker`: `app worker` with `tests.scale.note` and `tests.scale.slow`, which push what
  they did, and in which process, to the Redis list RUNS_KEY;
- `scheduler`: `app scheduler` with `tests.scale.heartbeat` due every second.

Only these processes import this module: the test processes' own broker never sees the
heartbeat's schedule."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid

from fastapi import APIRouter, FastAPI
from redis.asyncio import Redis

from app.core.cache import Cache
from app.core.config import get_settings
from app.core.queue import broker
from app.main import create_app
from tests.reliability.serve import serve

RUNS_KEY = "tests:scale:runs"  # prefixed with APP_NAME

test_routes = APIRouter(prefix="/test")


@test_routes.get("/cache/{key}")
async def cached_read(key: str, cache: Cache) -> dict[str, str]:
    async def compute() -> str:
        return f"computed by {os.getpid()}, {uuid.uuid4().hex}"  # each computation its own

    return {"value": await cache.get_or_set(f"scale:{key}", compute)}


@test_routes.delete("/cache/{key}", status_code=204)
async def invalidate(key: str, cache: Cache) -> None:
    await cache.delete(f"scale:{key}")


def create_replica_app() -> FastAPI:
    app = create_app()
    app.include_router(test_routes)
    return app


async def _push(value: str) -> None:
    settings = get_settings()
    assert settings.redis_url is not None
    async with Redis.from_url(settings.redis_url) as redis:
        await redis.rpush(f"{settings.app_name}:{RUNS_KEY}", value)


@broker.task(task_name="tests.scale.note")
async def note(n: int) -> None:
    await _push(f"ran:{n}:{os.getpid()}")


@broker.task(task_name="tests.scale.slow")
async def slow(n: int, seconds: float) -> None:
    await _push(f"started:{n}:{os.getpid()}")
    await asyncio.sleep(seconds)
    await _push(f"finished:{n}:{os.getpid()}")


@broker.task(task_name="tests.scale.heartbeat", schedule=[{"interval": 1}])
async def heartbeat() -> None:
    """Counted on the queue, not run: the scheduler tests start no worker."""


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        serve("tests.reliability.scale_out_processes:create_replica_app")
    else:
        from app.cli import cli

        cli(sys.argv[1:])
