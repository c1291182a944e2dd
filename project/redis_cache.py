"""Django's Redis cache backend on the gateway's client from ``project.redis`` (cluster-aware).

Used by django-ratelimit (``CACHES["ratelimit"]``). Django's own backend builds its clients from the
URL and cannot talk to a Redis Cluster; this one takes the process's ``gateway`` client instead and
splits the multi-key calls key by key, so none of them crosses hash slots.
"""

from collections.abc import Mapping
from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient

from project.redis import redis_client


class _Client(RedisCacheClient):
    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        return redis_client("gateway")

    def get_many(self, keys: Any) -> dict[Any, Any]:
        found = {}
        for key in keys:
            value = self.get(key, None)
            if value is not None:
                found[key] = value
        return found

    def set_many(self, data: Mapping[Any, Any], timeout: Any) -> None:
        for key, value in data.items():
            self.set(key, value, timeout)

    def delete_many(self, keys: Any) -> None:
        for key in keys:
            self.delete(key)


class GatewayRedisCache(RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = _Client

    def clear(self) -> None:
        """Delete this cache's keys only (its ``KEY_PREFIX``): Django's FLUSHDB would also empty
        the broker, limits and counters that share the gateway Redis."""
        client = redis_client("gateway")
        for key in client.scan_iter(match=f"{self.key_prefix}:*", count=1000):
            client.delete(key)
