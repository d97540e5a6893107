"""Per-client rate limits on Redis: a global default and per-route or programmatic limits.

Why not fastapi-limiter's `RateLimiter` as is: it is one bucket shared by every client and scans
`app.routes` on each request, and pyrate-limiter's `Limiter` answers only yes/no, while the
`RateLimit-*` and `Retry-After` headers need the remaining count and the reset time. So each
(scope, client) pair gets a fixed-window counter, updated atomically by one Lua script
(one round trip). Limits are written "5/minute", "100/hour", "10/second", "1000/day".

The client is the authenticated user (`request.state.user_id`) when there is one, else the peer
IP; `X-Forwarded-For` is read only when the peer is one of TRUSTED_PROXIES.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any

import structlog
from fastapi import Depends, Request, Response
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.core.config import Settings
from app.core.errors import RateLimited

log = structlog.get_logger("app.ratelimit")

_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_LIMIT = re.compile(r"^\s*(\d+)\s*/\s*(\d+)?\s*(second|minute|hour|day)s?\s*$")

# INCRBY the window's counter, start its expiry on the first hit; return count and ms left.
_HIT_SCRIPT = """
local current = redis.call('INCRBY', KEYS[1], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
return {current, ttl}
"""


@dataclass(frozen=True)
class Limit:
    count: int
    seconds: int

    @classmethod
    def parse(cls, value: str | Limit) -> Limit:
        if isinstance(value, Limit):
            return value
        return _parse_limit(value)

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
    reset: int  # seconds until the window resets

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


class RateLimiter:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.prefix = f"{settings.app_name}:ratelimit"
        self.enabled = settings.rate_limit_enabled
        self.fail_open = settings.rate_limit_fail_open
        self.default = Limit.parse(settings.rate_limit_default)
        self.trusted = _networks(settings.trusted_proxies)
        self._script: Any = redis.register_script(_HIT_SCRIPT)

    async def hit(
        self, *, key: str, limit: str | Limit, cost: int = 1, scope: str = "custom"
    ) -> RateLimitState:
        """Count `cost` against `key`'s `limit`; raise `RateLimited` (429) when over it."""
        state = await self.peek_hit(key=key, limit=limit, cost=cost, scope=scope)
        if not state.allowed:
            raise RateLimited("Rate limit exceeded. Retry later.", headers=state.headers)
        return state

    async def peek_hit(
        self, *, key: str, limit: str | Limit, cost: int = 1, scope: str = "custom"
    ) -> RateLimitState:
        """Like `hit`, but returns the state instead of raising."""
        parsed = Limit.parse(limit)
        if not self.enabled:
            return RateLimitState(True, parsed.count, parsed.count, parsed.seconds)
        redis_key = f"{self.prefix}:{scope}:{key}"
        try:
            count, ttl_ms = await self._script(keys=[redis_key], args=[cost, parsed.seconds * 1000])
        except (RedisError, OSError) as error:
            log.warning(
                "ratelimit_unavailable",
                fail_open=self.fail_open,
                scope=scope,
                error=type(error).__name__,
            )
            return RateLimitState(self.fail_open, parsed.count, 0, 1)
        remaining = max(parsed.count - int(count), 0)
        reset = math.ceil(int(ttl_ms) / 1000)
        return RateLimitState(int(count) <= parsed.count, parsed.count, remaining, reset)

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


def get_rate_limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.rate_limiter
    return limiter


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
        limiter = get_rate_limiter(request)
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
    """The global RATE_LIMIT_DEFAULT, one bucket per client across the whole API."""
    limiter = get_rate_limiter(request)
    state = await limiter.hit(
        key=limiter.client_key(request), limit=limiter.default, scope="default"
    )
    _set_headers(response, state)
