"""The process's Redis client for Chorus' own data (``REDIS_URL``), built once per process.

redis-py pools reset themselves after a fork, so one client per process is safe in prefork
Celery workers too. Short timeouts: every caller treats Redis as something that can be down.
"""

from functools import lru_cache

import redis
from django.conf import settings


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.CHORUS_REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
