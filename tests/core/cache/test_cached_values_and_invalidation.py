from __future__ import annotations

from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from pydantic import BaseModel
from redis.asyncio import Redis

from app.core.cache import CacheService, cached
from app.main import create_app
from tests.conftest import Services, make_settings


class Item(BaseModel):
    id: int
    name: str


class ItemService:
    def __init__(self, cache: CacheService) -> None:
        self.cache = cache
        self.calls = 0

    @cached(ttl=60, key="items:{item_id}", tags=["items", "item:{item_id}"])
    async def get(self, item_id: int) -> Item:
        self.calls += 1
        return Item(id=item_id, name=f"item {item_id} v{self.calls}")


async def test_set_get_roundtrip_with_prefix_and_ttl(app: FastAPI, redis: Redis) -> None:
    cache: CacheService = app.state.cache
    await cache.set("answer", {"value": 42}, ttl=30)
    assert await cache.get("answer") == {"value": 42}
    assert 0 < await redis.ttl("app:cache:answer") <= 30
    await cache.set("item", Item(id=1, name="a"))
    assert await cache.get("item", type_=Item) == Item(id=1, name="a")
    assert await cache.get("missing", default="none") == "none"
    assert await cache.delete("answer") == 1
    assert await cache.get("answer") is None


async def test_cached_decorator_hits_and_invalidates_by_key_tag_namespace(app: FastAPI) -> None:
    cache: CacheService = app.state.cache
    service = ItemService(cache)
    first = await service.get(1)
    assert isinstance(first, Item)
    assert await service.get(1) == first
    assert service.calls == 1

    await cache.delete("items:1")
    assert (await service.get(1)).name == "item 1 v2"

    await service.get(2)
    assert await cache.invalidate_tags("item:2") == 1
    assert (await service.get(2)).name == "item 2 v4"
    assert (await service.get(1)).name == "item 1 v2"  # untouched by that tag

    assert await cache.invalidate_namespace("items") == 2
    assert (await service.get(1)).name == "item 1 v5"


async def test_get_or_set_computes_once(app: FastAPI) -> None:
    cache: CacheService = app.state.cache
    calls: list[int] = []

    async def compute() -> list[int]:
        calls.append(1)
        return [1, 2]

    assert await cache.get_or_set("k", compute) == [1, 2]
    assert await cache.get_or_set("k", compute) == [1, 2]
    assert len(calls) == 1


async def test_redis_down_falls_through_to_the_computation(services: Services) -> None:
    app = create_app(make_settings(services, redis_url="redis://127.0.0.1:1/0", redis_timeout=0.2))
    async with LifespanManager(app):
        service = ItemService(app.state.cache)
        assert (await service.get(7)).name == "item 7 v1"
        assert (await service.get(7)).name == "item 7 v2"  # no cache, but no error either
        assert await app.state.cache.set("x", 1) is False
        assert await app.state.cache.invalidate_tags("items") == 0
