"""The queue benchmark's probe: a bare task that records when it started, beside when its
endpoint enqueued it, in a Redis list the benchmark reads afterwards. The template's worker and
bare taskiq's run the same function."""

from __future__ import annotations

import os
import time

from redis.asyncio import Redis

STARTS_KEY = "bench:queue:starts"
_redis: Redis | None = None


async def record_start(enqueued_at: float) -> None:
    global _redis  # one client per worker process, made on the first task
    if _redis is None:
        _redis = Redis.from_url(os.environ["REDIS_URL"])
    await _redis.rpush(STARTS_KEY, f"{enqueued_at:.6f} {time.time():.6f}")
