"""The limiter: named policies (``policies.py``) over a Redis backend shared by every node and an
in-memory one per process, behind one set of functions.

- Tiered token buckets (``comments``, ``reactions``, ``writes``, ``reads``, ``ws_messages``,
  ``internal``): ``rate_limit_check`` (sync), ``rate_limit_check_async`` (on the event loop) and
  ``rate_limit_check_many`` (a batch in one round trip). While the limiter's Redis is unreachable
  ``CHORUS_RATELIMIT_WHEN_REDIS_DOWN`` decides: the same limits from this process's buckets
  (``local``), admit (``open``) or refuse (``closed``).
- Fixed windows (``taps``): ``window_check`` / ``window_check_async``, over the caller's Redis.
- Per-owner buckets (``ws_frames``): ``owner_bucket``, an in-memory bucket its owner keeps.
"""

import asyncio
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pybreaker
import redis
import redis.asyncio as aioredis
from django.conf import settings

from project.breakers import breaker_retry_after, redis_breaker
from project.ratelimit import keys
from project.ratelimit.memory_backend import TokenBucket as MemoryBucket
from project.ratelimit.memory_backend import local_buckets
from project.ratelimit.policies import Backend, policy_get
from project.ratelimit.redis_backend import TIERS, BucketResult, TokenBucket, window_take, window_take_async
from project.redis import redis_async_client, redis_client

logger = logging.getLogger(__name__)


def _tiered(name: str) -> None:
    if policy_get(name).backend is not Backend.REDIS_TIERED:
        raise ValueError(f"{name!r} is not a tiered rate-limit policy")


class RateLimiterUnavailable(Exception):
    """The limiter's Redis is down (or its breaker is open) and the limiter fails closed."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"rate limiter unavailable, retry in {retry_after}s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class RateDecision:
    """What a caller needs to answer: admit or refuse, and the ``RateLimit-*`` header values.

    ``limit`` is None when the limiter failed open (Redis down): there is nothing honest to report.
    """

    allowed: bool
    limit: int | None = None
    remaining: int | None = None
    reset_after: float = 0.0
    retry_after: float = 0.0
    tier: str = ""


def limiter_redis() -> redis.Redis:
    # Short timeouts: a limiter that waits seconds for Redis is itself the outage.
    return redis_client("gateway")


@lru_cache(maxsize=1)
def _bucket() -> TokenBucket:
    return TokenBucket(limiter_redis())


def _limits(service: str) -> dict[str, tuple[float, float]]:
    table = settings.CHORUS_RATE_LIMITS
    limits: dict[str, tuple[float, float]] = {}
    for tier in TIERS:
        capacity, rate = table[tier][service]  # a pair, which an override (in tests) may give as a list
        limits[tier] = (capacity, rate)
    return limits


def rate_limit_check(*, subject: str, service: str, tier: str | None = None, cost: int = 1) -> RateDecision:
    """Spend ``cost`` tokens of ``subject``'s bucket for ``service``; one Redis round trip.

    ``subject`` is ``keys.user_subject(id)`` or ``keys.ip_subject(ip)`` (or any stable name);
    ``service`` a tiered policy (``POLICIES``). ``tier`` forces a tier (the internal API does); otherwise the
    admin's pin applies, else the automatic tier from the subject's recent rate. Every call, admitted
    or not, counts towards that rate, so hammering makes a user "hot". Safe from sync code only
    (blocking Redis call): async callers use ``rate_limit_check_async``.

    If Redis is unreachable, ``CHORUS_RATELIMIT_WHEN_REDIS_DOWN`` decides: ``local`` (default)
    applies the same limits from a per-process bucket, ``open`` admits, ``closed`` raises
    ``RateLimiterUnavailable`` (answer 503 with its ``retry_after``).
    """
    _tiered(service)
    try:
        result = redis_breaker.call(
            _bucket().take, **_take_arguments(subject=subject, service=service, tier=tier, cost=cost)
        )
    except (redis.RedisError, pybreaker.CircuitBreakerError) as exc:
        mode = settings.CHORUS_RATELIMIT_WHEN_REDIS_DOWN
        if mode == "open":
            logger.warning("rate limiter unavailable (%s); failing open", exc.__class__.__name__)
            return RateDecision(allowed=True)
        if mode == "local":
            return _local_decision(subject=subject, service=service, tier=tier or "regular", cost=cost)
        raise RateLimiterUnavailable(breaker_retry_after(redis_breaker)) from exc
    return _decision(result)


def rate_limit_check_many(*, checks: Sequence[tuple[str, str]]) -> list[RateDecision]:
    """``rate_limit_check`` for many ``(subject, service)`` pairs in one Redis round trip, in order.

    The same decisions, and the same fallback when the limiter's Redis is unreachable, as one call
    each; for a caller that has a batch anyway (the fast lane's group commit of comments).
    """
    for _subject, service in checks:
        _tiered(service)
    calls = [_take_arguments(subject=subject, service=service, tier=None, cost=1) for subject, service in checks]
    try:
        results = redis_breaker.call(_bucket().take_many, limiter_redis(), calls)
    except (redis.RedisError, pybreaker.CircuitBreakerError):
        return [rate_limit_check(subject=subject, service=service) for subject, service in checks]
    return [_decision(result) for result in results]


def _take_arguments(*, subject: str, service: str, tier: str | None, cost: int) -> dict[str, Any]:
    return {
        "bucket_key": keys.bucket_key(subject=subject, service=service),
        "subject_key": keys.subject_key(subject=subject),
        "pin_key": keys.pin_key(subject=subject),
        "limits": _limits(service),
        "forced_tier": tier or "",
        "cost": cost,
        "hot_above": settings.CHORUS_TIER_HOT_ABOVE,
        "regular_below": settings.CHORUS_TIER_REGULAR_BELOW,
        "hold_seconds": settings.CHORUS_TIER_HOLD_SECONDS,
        "window_seconds": settings.CHORUS_TIER_WINDOW_SECONDS,
    }


def _decision(result: BucketResult) -> RateDecision:
    return RateDecision(
        allowed=result.allowed,
        limit=result.limit,
        remaining=result.remaining,
        reset_after=result.reset_after,
        retry_after=result.retry_after,
        tier=result.tier,
    )


def _local_decision(*, subject: str, service: str, tier: str, cost: int) -> RateDecision:
    """The same limits from this process's own bucket, while the shared one is out of reach."""
    capacity, rate = _limits(service)[tier]
    allowed, remaining, wait = local_buckets.take(
        subject=subject, service=service, capacity=capacity, rate=rate, cost=cost
    )
    return RateDecision(
        allowed=allowed,
        limit=int(capacity),
        remaining=int(remaining),
        reset_after=math.ceil((capacity - remaining) / rate) if rate > 0 else 0,
        retry_after=0 if allowed else max(1, math.ceil(wait)),
        tier=tier,
    )


_async_buckets: dict[int, TokenBucket] = {}


def _async_bucket() -> TokenBucket:
    """One bucket over an asyncio client per event loop (an asyncio pool must not cross loops)."""
    loop_id = id(asyncio.get_running_loop())
    bucket = _async_buckets.get(loop_id)
    if bucket is None:
        bucket = _async_buckets[loop_id] = TokenBucket(redis_async_client("gateway"))
    return bucket


def _nothing() -> None:
    return None


async def rate_limit_check_async(*, subject: str, service: str, tier: str | None = None, cost: int = 1) -> RateDecision:
    """``rate_limit_check`` for async code, on the event loop while the limiter's Redis answers.

    The same script and arguments over an asyncio client, so a healthy check costs no thread hop.
    While the breaker is not closed, or when this call fails, the sync path decides off the loop:
    it counts the failure in ``redis_breaker`` and applies ``CHORUS_RATELIMIT_WHEN_REDIS_DOWN``
    exactly as for every other caller (the failed call is tried once more there).
    """
    _tiered(service)
    if redis_breaker.current_state == pybreaker.STATE_CLOSED:
        arguments = _take_arguments(subject=subject, service=service, tier=tier, cost=cost)
        try:
            result = await _async_bucket().take(**arguments)
        except (redis.RedisError, OSError):
            pass
        else:
            if redis_breaker.fail_counter:
                redis_breaker.call(_nothing)  # failures count only while consecutive
            return _decision(result)
    from asgiref.sync import sync_to_async

    return await sync_to_async(rate_limit_check, thread_sensitive=False)(
        subject=subject, service=service, tier=tier, cost=cost
    )


def window_check(*, policy: str, subject: str, client: redis.Redis) -> float | None:
    """Count one event of ``subject`` in ``policy``'s fixed window on ``client`` (its Redis, whose
    clock decides); ``None`` to admit, else seconds until the next window."""
    spec = policy_get(policy)
    if spec.backend is not Backend.REDIS_WINDOW:
        raise ValueError(f"{policy!r} is not a fixed-window rate-limit policy")
    return window_take(client, key=keys.window_key(policy=policy, subject=subject), limit=int(spec.limit()[0]))


async def window_check_async(*, policy: str, subject: str, client: aioredis.Redis) -> float | None:
    """``window_check`` over an asyncio client."""
    spec = policy_get(policy)
    if spec.backend is not Backend.REDIS_WINDOW:
        raise ValueError(f"{policy!r} is not a fixed-window rate-limit policy")
    key = keys.window_key(policy=policy, subject=subject)
    return await window_take_async(client, key=key, limit=int(spec.limit()[0]))


def owner_bucket(policy: str) -> MemoryBucket:
    """A new in-memory bucket for ``policy`` (e.g. ``ws_frames``), kept by its owner (a socket)."""
    spec = policy_get(policy)
    if spec.backend is not Backend.MEMORY:
        raise ValueError(f"{policy!r} is not a per-owner rate-limit policy")
    burst, rate = spec.limit()
    return MemoryBucket(rate=rate, burst=burst)
