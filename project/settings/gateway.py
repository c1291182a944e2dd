"""The gateway: token-bucket limits per tier and service, the internal API, overload protection."""

import json

from project.settings.environment import (
    CHORUS_GATEWAY_REDIS_URL,
    CHORUS_RATELIMIT_WHEN_REDIS_DOWN,
    CHORUS_REDIS_PREFIX,
    RATE_LIMITS_JSON,
)

# (capacity, tokens refilled per second) per tier and service. "hot" is deliberately stricter than
# "regular": a user sending far more than anyone else is slowed down harder, not just capped.
# "writes" is every other write (edits, deletes, reactions on comments, saga retries: each appends
# an event that reaches every subscriber), spent by default (gateway/throttles.py); "reads" is what
# an anonymous client spends per API read, per address.
CHORUS_RATE_LIMITS: dict[str, dict[str, tuple[float, float]]] = {
    "regular": {
        "comments": (10, 0.5), "reactions": (30, 5), "writes": (20, 1), "reads": (120, 20), "ws_messages": (30, 5),
        "internal": (0, 1),
    },
    "hot": {
        "comments": (3, 0.1), "reactions": (10, 1), "writes": (5, 0.2), "reads": (30, 5), "ws_messages": (10, 1),
        "internal": (0, 1),
    },
    "trusted": {
        "comments": (30, 2), "reactions": (60, 10), "writes": (60, 3), "reads": (300, 50), "ws_messages": (60, 10),
        "internal": (0, 1),
    },
    "internal": {
        "comments": (500, 100), "reactions": (500, 100), "writes": (500, 100), "reads": (500, 100),
        "ws_messages": (500, 100), "internal": (500, 100),
    },
}  # fmt: skip
for _tier, _services in (json.loads(RATE_LIMITS_JSON) if RATE_LIMITS_JSON else {}).items():
    for _service, (_capacity, _rate) in _services.items():
        CHORUS_RATE_LIMITS.setdefault(_tier, {})[_service] = (float(_capacity), float(_rate))

if CHORUS_RATELIMIT_WHEN_REDIS_DOWN not in {"local", "closed", "open"}:
    raise ValueError("CHORUS_RATELIMIT_WHEN_REDIS_DOWN must be local, closed or open")

# django-ratelimit (coarse per-IP limits on anonymous sync views) counts in this Redis cache.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "ratelimit": {
        # The gateway's Redis client (project/redis.py), so it works against a Redis Cluster too.
        "BACKEND": "project.redis_cache.GatewayRedisCache",
        "LOCATION": CHORUS_GATEWAY_REDIS_URL,
        "KEY_PREFIX": f"{CHORUS_REDIS_PREFIX}:ratelimit",
    },
}
RATELIMIT_USE_CACHE = "ratelimit"
