"""Per-client rate limits on Redis: a global default, per-route limits and programmatic ones.

Counting follows the rate-limiter pattern of Redis's own `INCR` documentation: one counter per
client, scope and fixed window (`<prefix>:<scope>:<client>:<window>s:<window number>`),
incremented and given its expiry in one atomic `MULTI`, so concurrent requests can never both
take the last unit. Limits are written "5/minute", "100/hour", "10/second", "1000/day".

The client is its network address (`address_key`: an IPv6 client by its /64); `X-Forwarded-For`
is read only when the peer is one of TRUSTED_PROXIES. The global default runs before any
authentication, so it counts per address; a limit declared after `CurrentPrincipal` counts per
account (`client_key`). Why not fastapi-limiter 0.2 (docs/performance.md): its `RateLimiter` scans
`app.routes` on every request and fails on FastAPI 0.165's included routers.
"""

from __future__ import annotations

import ipaddress
import re
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated

import structlog
from fastapi import Depends, Request, Response
from pydantic import AfterValidator
from redis.asyncio import Redis
from redis.exceptions import RedisError
from taskiq import TaskiqDepends

from app.core import metrics
from app.core.config import Settings
from app.core.errors import RateLimited, ServiceUnavailable
from app.core.redis import RedisCircuit

log = structlog.get_logger("app.ratelimit")

_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_LIMIT = re.compile(r"^\s*(\d+)\s*/\s*(\d+)?\s*(second|minute|hour|day)s?\s*$")
# Counters outlive their window by this much, for clock skew between app hosts.
_EXPIRY_SLACK_S = 5

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


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


def _parsable_limit(value: str) -> str:
    _parse_limit(value)
    return value


# A setting that holds a limit ("5/minute"): one that does not parse is refused as it loads.
LimitSetting = Annotated[str, AfterValidator(_parsable_limit)]


@dataclass(frozen=True)
class RateLimitState:
    allowed: bool
    limit: int
    remaining: int
    reset: int  # seconds until the window ends and the count starts again
    counter: str | None = None  # the Redis key that counted it (None: nothing was counted)

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
    def __init__(
        self, redis: Redis, settings: Settings, *, circuit: RedisCircuit | None = None
    ) -> None:
        self.redis = redis
        self.circuit = circuit or RedisCircuit(settings.redis_retry_after)
        self.prefix = f"{settings.app_name}:ratelimit"
        self.enabled = settings.rate_limit_enabled
        self.fail_open = settings.rate_limit_fail_open
        self.credentials_fail_open = settings.rate_limit_credentials_fail_open
        self.default = Limit.parse(settings.rate_limit_default)
        self.trusted = _networks(settings.trusted_proxies)
        self.ipv6_prefix = settings.rate_limit_ipv6_prefix

    def _window(self, key: str, limit: Limit, scope: str) -> tuple[str, int]:
        """The counter's key for the current window, and the seconds left in the window."""
        now = time.time()
        number = int(now // limit.seconds)
        reset = max(1, int((number + 1) * limit.seconds - now + 0.999))
        return f"{self.prefix}:{scope}:{key}:{limit.seconds}s:{number}", reset

    async def peek_hit(
        self,
        *,
        key: str,
        limit: str | Limit,
        cost: int = 1,
        scope: str = "custom",
        fail_open: bool | None = None,
    ) -> RateLimitState:
        """Count `cost` against `key`'s `limit` and say whether it fitted (not raising). With
        Redis down the answer is RATE_LIMIT_FAIL_OPEN's, or `fail_open`'s when given."""
        parsed = Limit.parse(limit)
        if not self.enabled:
            return RateLimitState(True, parsed.count, parsed.count, parsed.seconds)
        counter, reset = self._window(key, parsed, scope)
        try:
            async with self.circuit, self.redis.pipeline(transaction=True) as pipe:
                pipe.incrby(counter, cost)
                pipe.expire(counter, reset + _EXPIRY_SLACK_S)
                count, _ = await pipe.execute()
        except (RedisError, OSError) as error:
            opens = self.fail_open if fail_open is None else fail_open
            self._log_unavailable(scope, error, opens)
            if not opens:
                raise ServiceUnavailable(
                    "Rate limits cannot be checked right now. Retry shortly.",
                    headers={"Retry-After": "5"},
                ) from None
            return RateLimitState(True, parsed.count, 0, 1)
        allowed = int(count) <= parsed.count
        if not allowed:
            metrics.RATE_LIMIT_REFUSALS.labels(scope=scope).inc()
        remaining = max(parsed.count - int(count), 0)
        return RateLimitState(allowed, parsed.count, remaining, reset, counter)

    async def hit(
        self,
        *,
        key: str,
        limit: str | Limit,
        cost: int = 1,
        scope: str = "custom",
        fail_open: bool | None = None,
    ) -> RateLimitState:
        """Count `cost` against `key`'s `limit`; raise `RateLimited` (429) when over it."""
        state = await self.peek_hit(
            key=key, limit=limit, cost=cost, scope=scope, fail_open=fail_open
        )
        if not state.allowed:
            raise RateLimited("Rate limit exceeded. Retry later.", headers=state.headers)
        return state

    async def refund(self, state: RateLimitState, *, cost: int = 1) -> None:
        """Give back what a `hit` counted (an attempt that succeeded), in the window that
        counted it even if a new one has started since."""
        if state.counter is None:
            return
        try:
            async with self.circuit, self.redis.pipeline(transaction=True) as pipe:
                pipe.decrby(state.counter, cost)
                pipe.expire(state.counter, state.reset + _EXPIRY_SLACK_S)
                await pipe.execute()
        except (RedisError, OSError) as error:
            self._log_unavailable("refund", error, self.fail_open)

    async def remember(self, *, key: str, scope: str, seconds: int) -> None:
        """Note that `key` proved itself (a right password from a client): see `remembers`."""
        try:
            async with self.circuit:
                await self.redis.set(f"{self.prefix}:known:{scope}:{key}", 1, ex=seconds)
        except (RedisError, OSError) as error:
            self._log_unavailable(scope, error, self.fail_open)

    async def remembers(self, *, key: str, scope: str) -> bool:
        """Whether `key` proved itself within the time given to `remember` (no, without Redis)."""
        try:
            async with self.circuit:
                return bool(await self.redis.exists(f"{self.prefix}:known:{scope}:{key}"))
        except (RedisError, OSError) as error:
            self._log_unavailable(scope, error, self.fail_open)
            return False

    def _log_unavailable(self, scope: str, error: Exception, fail_open: bool) -> None:
        log.warning(
            "ratelimit_unavailable", fail_open=fail_open, scope=scope, error=type(error).__name__
        )

    def client_key(self, request: Request) -> str:
        """Who a request counts against: the signed-in account, else its network address."""
        principal = getattr(request.state, "principal", None)
        if principal is not None:
            return f"user:{principal.id}"
        return self.address_key(request)

    def address_key(self, request: Request) -> str:
        """The client's network address; an IPv6 client by its /64 (RATE_LIMIT_IPV6_PREFIX),
        as one subscriber usually holds a whole /64 and could otherwise rotate through it."""
        address = client_ip(request, self.trusted)
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return f"ip:{address}"
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped is not None:
                return f"ip:{ip.ipv4_mapped}"
            return f"ip:{ipaddress.ip_network(f'{ip}/{self.ipv6_prefix}', strict=False)}"
        return f"ip:{ip}"


def _networks(values: list[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(value.strip(), strict=False) for value in values)


def _is_trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def client_ip(request: Request, trusted: tuple[Network, ...] = ()) -> str:
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


# `= TaskiqDepends()` lets tasks resolve it too (`bind_app` gives them the app).
async def get_rate_limiter(request: Request = TaskiqDepends()) -> RateLimiter:
    limiter: RateLimiter = request.app.state.rate_limiter
    return limiter


RateLimits = Annotated[RateLimiter, Depends(get_rate_limiter)]


async def get_client_address(request: Request, limiter: RateLimits) -> str:
    """The caller's network address as the limits key it (IPv6 by its /64)."""
    return limiter.address_key(request)


ClientAddress = Annotated[str, Depends(get_client_address)]


class RateLimit:
    """A per-route limit as a dependency:

    `@router.post("/login", dependencies=[Depends(RateLimit("5/minute", scope="login"))])`
    """

    def __init__(self, limit: str, *, scope: str, cost: int = 1) -> None:
        self.limit = Limit.parse(limit)
        self.cost = cost
        self.scope = scope

    async def __call__(self, request: Request, response: Response, limiter: RateLimits) -> None:
        state = await limiter.hit(
            key=limiter.client_key(request), limit=self.limit, cost=self.cost, scope=self.scope
        )
        response.headers.update(state.headers)


async def default_rate_limit(request: Request, response: Response, limiter: RateLimits) -> None:
    """RATE_LIMIT_DEFAULT, one budget per client across the whole API."""
    state = await limiter.hit(
        key=limiter.client_key(request), limit=limiter.default, scope="default"
    )
    response.headers.update(state.headers)
