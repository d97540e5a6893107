"""Per-client rate limits on Redis: a global default and per-route or programmatic limits.

Counting is pyrate-limiter's (4.5+): a sliding-window log in a Redis sorted set, checked and
written by its `RedisBucket` Lua script, one atomic `EVALSHA`. fastapi-limiter 0.2's
`RateLimiter` is not used as is: it shares ONE bucket between every client and scans `app.routes`
on every request. Nor is pyrate's `Limiter`: it answers only yes/no and serialises every check in
the process behind one asyncio lock held across the Redis round trip. Instead `ClientBuckets`, a
pyrate `BucketFactory`, routes each item ("<scope>:<client key>") to its own `RedisBucket`,
created lazily and kept in a bounded LRU dict (a bucket is a stateless handle; Redis holds the
state), and the verdict plus retry-after come from the bucket's `Decision`.

The script returns nothing but the verdict, so an admitted request needs one more pipelined read
for the `RateLimit-*` headers: the in-window count and the oldest entry (whose expiry is when
capacity frees), plus housekeeping (trim entries that left the window, refresh the key's TTL).
So: 2 round trips when admitted, 1 when refused (cost 1: remaining is 0 by definition and the wait
is in the `Decision`). Limits are written "5/minute", "100/hour", "10/second", "1000/day".

The client is the authenticated user (`request.state.user_id`) when there is one, else the peer
IP; `X-Forwarded-For` is read only when the peer is one of TRUSTED_PROXIES. Routes decorated with
fastapi-limiter's `skip_limiter` are exempt from the global default.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import re
from collections import OrderedDict
from collections.abc import Awaitable
from dataclasses import dataclass
from functools import lru_cache
from inspect import isawaitable
from typing import Annotated, TypeVar, cast

import structlog
from fastapi import Depends, Request, Response
from fastapi_limiter.decorators import skip_limiter
from pyrate_limiter import (
    AbstractBucket,
    AbstractClock,
    BucketFactory,
    Decision,
    Duration,
    Rate,
    RateItem,
    RedisBucket,
    SlidingWindowLog,
    WallClock,
)
from pyrate_limiter.buckets.redis_bucket import LuaScript
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from app.core.config import Settings
from app.core.errors import RateLimited

__all__ = [
    "ClientBuckets",
    "Limit",
    "RateLimit",
    "RateLimitState",
    "RateLimiter",
    "RateLimits",
    "client_ip",
    "default_rate_limit",
    "get_rate_limiter",
    "skip_limiter",
]

log = structlog.get_logger("app.ratelimit")

_T = TypeVar("_T")

_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_LIMIT = re.compile(r"^\s*(\d+)\s*/\s*(\d+)?\s*(second|minute|hour|day)s?\s*$")

# Cached bucket handles per limit; evicting one loses nothing (its state lives in Redis).
_MAX_BUCKETS = 1024
# Keys outlive their newest entry by this much, for clock skew between app hosts.
_EXPIRY_SLACK_MS = 1000
# Redis caches scripts by SHA1 of their text; `EVALSHA` with it needs no `SCRIPT LOAD` first
# unless the cache was emptied (a restart, `SCRIPT FLUSH`), which `_put` recovers from.
_PUT_SCRIPT_SHA = hashlib.sha1(LuaScript.PUT_ITEM.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class Limit:
    count: int
    seconds: int

    @classmethod
    def parse(cls, value: str | Limit) -> Limit:
        if isinstance(value, Limit):
            return value
        return _parse_limit(value)

    @property
    def rate(self) -> Rate:
        return Rate(self.count, Duration.SECOND * self.seconds)

    def __str__(self) -> str:
        return f"{self.count}/{self.seconds}s"


@lru_cache(maxsize=256)
def _parse_limit(value: str) -> Limit:
    match = _LIMIT.match(value)
    if match is None or int(match.group(1)) < 1:
        raise ValueError(f"invalid rate limit {value!r}; write it like '5/minute'")
    multiplier = int(match.group(2) or 1)
    return Limit(count=int(match.group(1)), seconds=multiplier * _PERIODS[match.group(3)])


@dataclass(frozen=True)
class RateLimitState:
    allowed: bool
    limit: int
    remaining: int
    reset: int  # seconds until capacity frees: the oldest counted hit leaves the window

    @property
    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset),
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(self.reset, 1))
        return headers


def _seconds(wait_ms: int, limit: Limit) -> int:
    """Whole seconds, rounded up so a client that waits them is not early. pyrate's window
    includes both ends, so a wait can be the window plus 1 ms; that reads as the window."""
    return min(math.ceil(wait_ms / 1000), limit.seconds)


async def _resolved(value: _T | Awaitable[_T]) -> _T:
    """pyrate-limiter returns a value or an awaitable of it, depending on the backend."""
    if isawaitable(value):
        return cast(_T, await value)
    return value


class ClientBuckets(BucketFactory):
    """A pyrate-limiter bucket factory for one `Limit`: one `RedisBucket` per item name
    ("<scope>:<client key>"), at `<prefix>:<window>s:<scope>:<client key>`.

    The window length is part of the key because a sliding log is trimmed to its own window, so
    two windows must not share one. Buckets are made lazily and cached, least recently used
    first out. Nothing is registered with pyrate's background `Leaker` (a task that would walk
    every cached bucket every few seconds): `RateLimiter` trims a key and refreshes its TTL in the
    same round trip that reads the headers, and idle keys expire on their own.
    """

    def __init__(
        self,
        redis: Redis,
        limit: Limit,
        *,
        prefix: str,
        clock: AbstractClock,
        algorithm: SlidingWindowLog,
        max_buckets: int = _MAX_BUCKETS,
    ) -> None:
        self.redis = redis
        self.limit = limit
        self.rate = limit.rate
        self.prefix = prefix
        self.clock = clock
        self.algorithm = algorithm
        self.max_buckets = max_buckets
        self._buckets: OrderedDict[str, RedisBucket] = OrderedDict()

    def wrap_item(self, name: str, weight: int = 1) -> RateItem | Awaitable[RateItem]:
        now = self.clock.now()
        if isawaitable(now):
            return self._wrap_async(name, weight, now)
        return RateItem(name, now, weight=weight)

    @staticmethod
    async def _wrap_async(name: str, weight: int, now: Awaitable[int]) -> RateItem:
        return RateItem(name, await now, weight=weight)

    def key(self, name: str) -> str:
        return f"{self.prefix}:{self.limit.seconds}s:{name}"

    def get(self, item: RateItem) -> RedisBucket:
        bucket = self._buckets.get(item.name)
        if bucket is None:
            bucket = RedisBucket(
                [self.rate], self.redis, self.key(item.name), _PUT_SCRIPT_SHA, self.algorithm
            )
            self._buckets[item.name] = bucket
            if len(self._buckets) > self.max_buckets:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(item.name)
        return bucket

    def get_buckets(self) -> list[AbstractBucket]:
        return list(self._buckets.values())


class RateLimiter:
    def __init__(
        self, redis: Redis, settings: Settings, *, clock: AbstractClock | None = None
    ) -> None:
        self.redis = redis
        self.prefix = f"{settings.app_name}:ratelimit"
        self.enabled = settings.rate_limit_enabled
        self.fail_open = settings.rate_limit_fail_open
        self.default = Limit.parse(settings.rate_limit_default)
        self.trusted = _networks(settings.trusted_proxies)
        # Wall-clock milliseconds: entries are compared across processes and hosts.
        self.clock: AbstractClock = clock or WallClock()
        self.algorithm = SlidingWindowLog()
        self._factories: dict[Limit, ClientBuckets] = {}

    def buckets(self, limit: str | Limit) -> ClientBuckets:
        """The bucket factory for `limit` (limits come from code and settings: a handful)."""
        parsed = Limit.parse(limit)
        factory = self._factories.get(parsed)
        if factory is None:
            factory = ClientBuckets(
                self.redis, parsed, prefix=self.prefix, clock=self.clock, algorithm=self.algorithm
            )
            self._factories[parsed] = factory
        return factory

    async def hit(
        self, *, key: str, limit: str | Limit, cost: int = 1, scope: str = "custom"
    ) -> RateLimitState:
        """Count `cost` against `key`'s `limit`; raise `RateLimited` (429) when over it."""
        state = await self.peek_hit(key=key, limit=limit, cost=cost, scope=scope)
        if not state.allowed:
            raise RateLimited("Rate limit exceeded. Retry later.", headers=state.headers)
        return state

    def _log_unavailable(self, scope: str, error: Exception) -> None:
        log.warning(
            "ratelimit_unavailable",
            fail_open=self.fail_open,
            scope=scope,
            error=type(error).__name__,
        )

    async def ensure_room(self, *, key: str, limit: str | Limit, scope: str = "custom") -> None:
        """Raise `RateLimited` (429) when `key` has no room left under `limit`, without
        counting a hit: for limits that count only some outcomes (e.g. failed sign-ins)."""
        parsed = Limit.parse(limit)
        if not self.enabled:
            return
        factory = self.buckets(parsed)
        try:
            item = await _resolved(factory.wrap_item(f"{scope}:{key}"))
            count, reset_ms = await self._window(factory, factory.get(item), item)
        except (RedisError, OSError) as error:
            self._log_unavailable(scope, error)
            if self.fail_open:
                return
            count, reset_ms = parsed.count, 1000
        if count >= parsed.count:
            state = RateLimitState(False, parsed.count, 0, _seconds(reset_ms, parsed))
            raise RateLimited("Rate limit exceeded. Retry later.", headers=state.headers)

    async def peek_hit(
        self, *, key: str, limit: str | Limit, cost: int = 1, scope: str = "custom"
    ) -> RateLimitState:
        """Like `hit`, but returns the state instead of raising."""
        parsed = Limit.parse(limit)
        if not self.enabled:
            return RateLimitState(True, parsed.count, parsed.count, parsed.seconds)
        factory = self.buckets(parsed)
        try:
            item = await _resolved(factory.wrap_item(f"{scope}:{key}", cost))
            bucket = factory.get(item)
            decision = await self._put(bucket, item)
            if not decision.allowed and cost == 1 and decision.retry_after_ms is not None:
                # Refused: the window holds at least `limit` hits, so none remain, and the
                # script already found the hit whose expiry makes room.
                reset = _seconds(decision.retry_after_ms, parsed)
                return RateLimitState(False, parsed.count, 0, reset)
            count, reset_ms = await self._window(factory, bucket, item)
        except (RedisError, OSError) as error:
            self._log_unavailable(scope, error)
            return RateLimitState(self.fail_open, parsed.count, 0, 1)
        remaining = max(parsed.count - count, 0)
        if not decision.allowed:
            # `None`: `cost` exceeds the limit and can never fit; say the whole window.
            wait_ms = decision.retry_after_ms
            reset_ms = wait_ms if wait_ms is not None else factory.rate.interval
        return RateLimitState(decision.allowed, parsed.count, remaining, _seconds(reset_ms, parsed))

    async def _put(self, bucket: RedisBucket, item: RateItem) -> Decision:
        """pyrate's atomic check-and-insert: one `EVALSHA` (plus a `SCRIPT LOAD` and a retry
        the first time after Redis lost its script cache; a refused script wrote nothing)."""
        try:
            return await _resolved(bucket.put_decision(item))
        except NoScriptError:
            await self.redis.script_load(LuaScript.PUT_ITEM)
            return await _resolved(bucket.put_decision(item))

    async def _window(
        self, factory: ClientBuckets, bucket: RedisBucket, item: RateItem
    ) -> tuple[int, int]:
        """One pipelined round trip after the put: trim entries older than the window (pyrate's
        `leak`, bounded so nothing the script still counts goes), refresh the key's TTL, and
        read the in-window count and the oldest entry, with the script's own window bounds.

        Returns the count and the milliseconds until the oldest entry leaves the window.
        """
        rate, now = factory.rate, item.timestamp
        start = self.algorithm.window_start(rate, now)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(bucket.bucket_key, "-inf", f"({start}")
            pipe.pexpire(bucket.bucket_key, rate.interval + _EXPIRY_SLACK_MS)
            pipe.zcount(bucket.bucket_key, start, now)
            pipe.zrangebyscore(bucket.bucket_key, start, now, start=0, num=1, withscores=True)
            _, _, count, oldest = await pipe.execute()
        if not oldest:
            return int(count), 0
        oldest_ms = int(oldest[0][1])
        return int(count), self.algorithm.retry_after(rate, now, oldest_ms)

    def client_key(self, request: Request) -> str:
        user_id = getattr(request.state, "user_id", None)
        if user_id is not None:
            return f"user:{user_id}"
        return f"ip:{client_ip(request, self.trusted)}"


def _networks(values: list[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(value.strip(), strict=False) for value in values)


def _is_trusted(
    address: str, trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def client_ip(
    request: Request, trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
) -> str:
    """The peer address, or, behind trusted proxies, the right-most untrusted X-Forwarded-For
    hop (the left-most entries are whatever the client chose to send)."""
    peer = request.client.host if request.client else "unknown"
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    forwarded = ",".join(request.headers.getlist("x-forwarded-for"))
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


def rate_limiter_of(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.rate_limiter
    return limiter


async def get_rate_limiter(request: Request) -> RateLimiter:
    """The dependency form (async: FastAPI runs sync dependencies in a thread pool)."""
    return rate_limiter_of(request)


RateLimits = Annotated[RateLimiter, Depends(get_rate_limiter)]


def _set_headers(response: Response, state: RateLimitState) -> None:
    for name, value in state.headers.items():
        response.headers[name] = value


class RateLimit:
    """A per-route limit as a dependency:

    `@router.post("/login", dependencies=[Depends(RateLimit("5/minute", scope="login"))])`
    """

    def __init__(self, limit: str, *, cost: int = 1, scope: str | None = None) -> None:
        self.limit = Limit.parse(limit)
        self.cost = cost
        self.scope = scope

    async def __call__(self, request: Request, response: Response) -> None:
        limiter = rate_limiter_of(request)
        if not limiter.enabled:
            return
        scope = self.scope or _route_scope(request)
        state = await limiter.hit(
            key=limiter.client_key(request), limit=self.limit, cost=self.cost, scope=scope
        )
        _set_headers(response, state)


def _route_scope(request: Request) -> str:
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    return f"{request.method}:{path}"


async def default_rate_limit(request: Request, response: Response) -> None:
    """The global RATE_LIMIT_DEFAULT, one bucket per client across the whole API.

    Endpoints decorated with fastapi-limiter's `@skip_limiter` are exempt; the matched route is
    read from the request scope, not searched for in `app.routes`."""
    limiter = rate_limiter_of(request)
    if not limiter.enabled:  # every API request asks: answer before any other work
        return
    endpoint = getattr(request.scope.get("route"), "endpoint", None)
    if getattr(endpoint, "_skip_limiter", False):
        return
    state = await limiter.hit(
        key=limiter.client_key(request), limit=limiter.default, scope="default"
    )
    _set_headers(response, state)
