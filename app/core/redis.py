"""The shared async Redis client, and the circuit that keeps a Redis outage from slowing
every request down."""

from __future__ import annotations

import time
from contextvars import ContextVar
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
    callers keep their own fallbacks (a cache miss, a limit that fails open, a 503).

    Then one call goes through as a probe (the circuit's half-open state) while the others
    still fail at once: Redis answers it and every call goes through again, or it fails and
    Redis counts as down for another REDIS_RETRY_AFTER. A still-frozen Redis costs one call a
    timeout per REDIS_RETRY_AFTER, not every call made when the wait ends."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        self._down_until: float | None = None  # None: closed, Redis answers
        self._probing = False
        self._is_probe: ContextVar[bool] = ContextVar(f"redis_probe_{id(self)}", default=False)

    @property
    def is_open(self) -> bool:
        """Whether calls fail at once right now (down, or a probe is under way)."""
        if self._down_until is None:
            return False
        return self._probing or time.monotonic() < self._down_until

    async def __aenter__(self) -> None:
        if self._down_until is None:
            return
        if self.is_open:
            raise RedisUnavailable("Redis failed moments ago; not asked again yet")
        self._probing = True
        self._is_probe.set(True)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        outage = isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError)
        if outage and not isinstance(exc, RedisUnavailable):
            metrics.REDIS_ERRORS.labels(error=type(exc).__name__).inc()
            # REDIS_RETRY_AFTER 0: no circuit, every call asks Redis.
            self._down_until = time.monotonic() + self.retry_after if self.retry_after > 0 else None
        elif (
            self._is_probe.get()
            and not isinstance(exc, RedisUnavailable)  # refused, not answered
            and (exc is None or isinstance(exc, Exception))
        ):
            self._down_until = None  # Redis answered the probe (an error reply is an answer)
        if self._is_probe.get():
            # A cancelled probe leaves the circuit half-open: the next call probes instead.
            self._is_probe.set(False)
            self._probing = False
