"""Rate limiting, shared by every surface: named policies over a Redis and an in-memory backend.

``limiter.py`` is the interface, ``policies.py`` names what is limited, ``redis_backend.py`` and
``memory_backend.py`` hold the two implementations (the same refill maths), ``keys.py`` every key.
"""

from project.ratelimit.limiter import (
    RateDecision,
    RateLimiterUnavailable,
    limiter_redis,
    owner_bucket,
    rate_limit_check,
    rate_limit_check_async,
    rate_limit_check_many,
    window_check,
    window_check_async,
)
from project.ratelimit.policies import POLICIES, Policy

__all__ = [
    "POLICIES",
    "Policy",
    "RateDecision",
    "RateLimiterUnavailable",
    "limiter_redis",
    "owner_bucket",
    "rate_limit_check",
    "rate_limit_check_async",
    "rate_limit_check_many",
    "window_check",
    "window_check_async",
]
