"""Cache on the app's Redis: `Cache` dependency, `@cached` decorator, invalidation by key/tag."""

from app.core.cache.service import Cache, CacheService, cached, get_cache, set_default_cache

__all__ = ["Cache", "CacheService", "cached", "get_cache", "set_default_cache"]
