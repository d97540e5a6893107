"""The shared async Redis client."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from app.core.config import Settings


def create_redis(settings: Settings) -> Redis:
    if settings.redis_url is None:
        raise RuntimeError("REDIS_URL is not set and no embedded Redis was started")
    client: Redis = Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=settings.redis_timeout,
        health_check_interval=30,
        # Fail fast when Redis is down: callers decide whether to degrade or fail.
        retry=Retry(NoBackoff(), 0),
        max_connections=256,
    )
    return client


async def get_redis(request: Request) -> Redis:
    client: Redis = request.app.state.redis
    return client


RedisClient = Annotated[Any, Depends(get_redis)]
