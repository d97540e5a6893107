"""`CacheService`: JSON values (orjson; Pydantic models included) under a per-app key prefix.

Redis is an optimisation here, never a dependency: when it is down, reads miss and
`get_or_set`/`@cached` compute the value, with a warning in the log instead of a 500.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Annotated, Any, ParamSpec, TypeVar, get_type_hints

import orjson
import structlog
from fastapi import Depends, Request
from pydantic import BaseModel, TypeAdapter
from redis.asyncio import Redis
from redis.exceptions import RedisError
from taskiq import TaskiqDepends

from app.core.redis import RedisCircuit

log = structlog.get_logger("app.cache")

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

_MISS = object()
# SET the value; add its key to each tag's set, which lives as long as its longest entry.
_SET_SCRIPT = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
for i = 2, #KEYS do
  redis.call('SADD', KEYS[i], ARGV[3])
  if redis.call('TTL', KEYS[i]) < tonumber(ARGV[2]) then
    redis.call('EXPIRE', KEYS[i], ARGV[2])
  end
end
return 1
"""
_default_cache: CacheService | None = None


def _encode_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"cannot cache a {type(value).__name__}")


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_encode_default)


class CacheService:
    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        default_ttl: int = 300,
        circuit: RedisCircuit | None = None,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.default_ttl = default_ttl
        self.circuit = circuit or RedisCircuit(retry_after=0)

    def key(self, key: str) -> str:
        return f"{self.prefix}:cache:{key}"

    def _tag_key(self, tag: str) -> str:
        return f"{self.prefix}:cache-tag:{tag}"

    async def _get_raw(self, key: str) -> Any:
        try:
            async with self.circuit:
                raw = await self.redis.get(self.key(key))
        except (RedisError, OSError) as error:
            log.warning("cache_unavailable", op="get", key=key, error=type(error).__name__)
            return _MISS
        if raw is None:
            return _MISS
        return orjson.loads(raw)

    async def get(self, key: str, *, type_: Any = None, default: Any = None) -> Any:
        """The cached value (validated as `type_` when given), or `default` on a miss."""
        value = await self._get_raw(key)
        if value is _MISS:
            return default
        return TypeAdapter(type_).validate_python(value) if type_ is not None else value

    async def set(
        self, key: str, value: Any, *, ttl: int | None = None, tags: Iterable[str] = ()
    ) -> bool:
        """Store `value` for `ttl` seconds; tags let `invalidate_tags` drop it later."""
        ttl = ttl or self.default_ttl
        payload = dumps(value)
        tag_keys = [self._tag_key(tag) for tag in tags]
        try:
            async with self.circuit:
                await self.redis.eval(
                    _SET_SCRIPT, 1 + len(tag_keys), self.key(key), *tag_keys, payload, ttl, key
                )
        except (RedisError, OSError) as error:
            log.warning("cache_unavailable", op="set", key=key, error=type(error).__name__)
            return False
        return True

    async def delete(self, *keys: str) -> int:
        if not keys:
            return 0
        try:
            async with self.circuit:
                deleted: int = await self.redis.delete(*(self.key(key) for key in keys))
        except (RedisError, OSError) as error:
            log.error("cache_invalidation_failed", keys=list(keys), error=type(error).__name__)
            return 0
        return deleted

    async def invalidate_tags(self, *tags: str) -> int:
        """Delete every entry stored with any of `tags`; return how many were deleted."""
        deleted = 0
        try:
            async with self.circuit:
                for tag in tags:
                    members = await self.redis.smembers(self._tag_key(tag))
                    keys = [self.key(m.decode() if isinstance(m, bytes) else m) for m in members]
                    if keys:
                        deleted += await self.redis.delete(*keys)
                    await self.redis.delete(self._tag_key(tag))
        except (RedisError, OSError) as error:
            log.error("cache_invalidation_failed", tags=list(tags), error=type(error).__name__)
        return deleted

    async def invalidate_namespace(self, namespace: str) -> int:
        """Delete every key that starts with `namespace:` (e.g. "users" drops "users:1")."""
        deleted = 0
        try:
            async with self.circuit:
                batch: list[Any] = []
                pattern = self.key(f"{namespace}:*")
                async for name in self.redis.scan_iter(match=pattern, count=500):
                    batch.append(name)
                    if len(batch) >= 500:
                        deleted += await self.redis.delete(*batch)
                        batch.clear()
                if batch:
                    deleted += await self.redis.delete(*batch)
        except (RedisError, OSError) as error:
            log.error("cache_invalidation_failed", namespace=namespace, error=type(error).__name__)
        return deleted

    async def get_or_set(
        self,
        key: str,
        factory: Callable[[], Awaitable[T]],
        *,
        ttl: int | None = None,
        tags: Iterable[str] = (),
        type_: Any = None,
    ) -> T:
        """The cached value, or `await factory()` stored for next time."""
        cached_value = await self._get_raw(key)
        if cached_value is not _MISS:
            if type_ is None:
                return cached_value  # type: ignore[no-any-return]
            result: T = TypeAdapter(type_).validate_python(cached_value)
            return result
        value = await factory()
        await self.set(key, value, ttl=ttl, tags=tags)
        return value


def set_default_cache(cache: CacheService | None) -> CacheService | None:
    """Set the cache `@cached` uses when the method's object carries none (the lifespan does);
    return the previous one."""
    global _default_cache
    previous, _default_cache = _default_cache, cache
    return previous


def _default_key(func: Callable[..., Any], arguments: dict[str, Any]) -> str:
    args = {name: value for name, value in arguments.items() if name not in ("self", "cls")}
    digest = hashlib.sha256(dumps(args) if args else b"").hexdigest()[:32]
    return f"{func.__module__}.{func.__qualname__}:{digest}"


def cached(
    *, ttl: int | None = None, key: str | None = None, tags: Iterable[str] = ()
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Cache an async function's result. `key` and `tags` are format strings over the
    function's arguments: `@cached(ttl=60, key="users:{user_id}", tags=["users"])`.

    The cache is the object's `cache` attribute when it has one (service methods), else the
    app's cache. The return annotation rebuilds the value (a Pydantic model comes back as one).
    """
    tag_templates = tuple(tags)

    def decorator(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        signature = inspect.signature(func)
        return_type: Any = get_type_hints(func).get("return")

        @functools.wraps(func)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            owner = bound.arguments.get("self")
            cache = getattr(owner, "cache", None)
            if not isinstance(cache, CacheService):
                cache = _default_cache
            if cache is None:
                return await func(*args, **kwargs)
            arguments = dict(bound.arguments)
            cache_key = key.format(**arguments) if key else _default_key(func, arguments)
            cache_tags = [tag.format(**arguments) for tag in tag_templates]
            result: R = await cache.get_or_set(
                cache_key,
                lambda: func(*args, **kwargs),
                ttl=ttl,
                tags=cache_tags,
                type_=return_type,
            )
            return result

        return wrapper

    return decorator


# `= TaskiqDepends()` lets tasks resolve it too (`bind_app` gives them the app).
async def get_cache(request: Request = TaskiqDepends()) -> CacheService:
    cache: CacheService = request.app.state.cache
    return cache


Cache = Annotated[CacheService, Depends(get_cache)]
