"""The shared async Redis client, and the circuit that keeps a Redis outage from slowing
every request down."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Annotated, Any

from fastapi import Depends, Request
from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from app.core import metrics
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


class RedisUnavailable(RedisConnectionError):
    """Raised, without a network round trip, while Redis counts as down."""


class RedisCircuit:
    """Wrap each Redis call: `async with circuit: await redis.get(key)`.

    After a call fails (refused, reset, or no answer within REDIS_TIMEOUT), Redis counts as
    down for REDIS_RETRY_AFTER seconds: calls made meanwhile raise `RedisUnavailable` at once
    instead of each waiting for their own timeout. So a request that asks Redis several things
    (a rate limit, then the cache) waits at most one REDIS_TIMEOUT on a frozen Redis, and
    callers keep their own fallbacks (a cache miss, a limit that fails open, a 503)."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        self._down_until = 0.0

    @property
    def is_open(self) -> bool:
        """Whether Redis counts as down right now."""
        return time.monotonic() < self._down_until

    async def __aenter__(self) -> None:
        if self.is_open:
            raise RedisUnavailable("Redis failed moments ago; not asked again yet")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        outage = isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError)
        if outage and not isinstance(exc, RedisUnavailable):
            metrics.REDIS_ERRORS.labels(error=type(exc).__name__).inc()
            self._down_until = time.monotonic() + self.retry_after
