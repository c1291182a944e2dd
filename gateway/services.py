"""Gateway writes: spend rate-limit tokens, pin tiers.

``rate_limit_check`` is the one entry point every surface uses (the DRF throttle in
``gateway.throttles``, the WebSocket consumer, the internal API).
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
from django.db import transaction

from gateway import keys
from gateway.local_bucket import local_buckets
from gateway.models import Tier, UserTier
from gateway.overload import load_shed_check
from gateway.token_bucket import TIERS, BucketResult, TokenBucket
from project.breakers import breaker_retry_after, redis_breaker
from realtime.extensions import FrameRefusal

logger = logging.getLogger(__name__)

SERVICES = ("comments", "reactions", "writes", "reads", "ws_messages", "internal")


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


@lru_cache(maxsize=1)
def gateway_redis() -> redis.Redis:
    # Short timeouts: a limiter that waits seconds for Redis is itself the outage.
    return redis.Redis.from_url(settings.CHORUS_GATEWAY_REDIS_URL, socket_timeout=0.25, socket_connect_timeout=0.25)


@lru_cache(maxsize=1)
def _bucket() -> TokenBucket:
    return TokenBucket(gateway_redis())


def _limits(service: str) -> dict[str, tuple[float, float]]:
    table = settings.CHORUS_RATE_LIMITS
    return {tier: tuple(table[tier][service]) for tier in TIERS}  # type: ignore[misc]


def rate_limit_check(*, subject: str, service: str, tier: str | None = None, cost: int = 1) -> RateDecision:
    """Spend ``cost`` tokens of ``subject``'s bucket for ``service``; one Redis round trip.

    ``subject`` is ``keys.user_subject(id)`` or ``keys.ip_subject(ip)`` (or any stable name);
    ``service`` one of ``SERVICES``. ``tier`` forces a tier (the internal API does); otherwise the
    admin's pin applies, else the automatic tier from the subject's recent rate. Every call, admitted
    or not, counts towards that rate, so hammering makes a user "hot". Safe from sync code only
    (blocking Redis call): async callers use ``rate_limit_check_async``.

    If Redis is unreachable, ``CHORUS_RATELIMIT_WHEN_REDIS_DOWN`` decides: ``local`` (default)
    applies the same limits from a per-process bucket, ``open`` admits, ``closed`` raises
    ``RateLimiterUnavailable`` (answer 503 with its ``retry_after``).
    """
    if service not in SERVICES:
        raise ValueError(f"unknown rate-limited service {service!r}")
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
        if service not in SERVICES:
            raise ValueError(f"unknown rate-limited service {service!r}")
    calls = [_take_arguments(subject=subject, service=service, tier=None, cost=1) for subject, service in checks]
    try:
        results = redis_breaker.call(_bucket().take_many, gateway_redis(), calls)
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
        client = aioredis.Redis.from_url(
            settings.CHORUS_GATEWAY_REDIS_URL, socket_timeout=0.25, socket_connect_timeout=0.25
        )
        bucket = _async_buckets[loop_id] = TokenBucket(client)
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
    if service not in SERVICES:
        raise ValueError(f"unknown rate-limited service {service!r}")
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


def user_tier_set(*, user_id: int, tier: str, pinned: bool, note: str = "") -> UserTier:
    """Record an admin's tier for a user and mirror the pin into Redis (where the script reads it).

    The Redis copy is written after commit; if Redis is down then, ``gateway_pins_sync`` (a
    management command) rewrites every pin from the database.
    """
    if tier not in Tier.values:
        raise ValueError(f"unknown tier {tier!r}")
    with transaction.atomic():
        row, _ = UserTier.objects.update_or_create(
            user_id=user_id, defaults={"tier": tier, "pinned": pinned, "note": note}
        )
        transaction.on_commit(lambda: user_tier_mirror(user_id=user_id, tier=tier if pinned else None))
    return row


def user_tier_mirror(*, user_id: int, tier: str | None) -> None:
    """Write (or with ``None`` remove) the Redis copy of a user's pinned tier."""
    key = keys.pin_key(subject=keys.user_subject(user_id))
    if tier is None:
        gateway_redis().delete(key)
    else:
        gateway_redis().set(key, tier)


def ws_frame_subject(scope: dict[str, object]) -> str:
    """The rate-limit subject of a WebSocket connection: its user, else its client address.

    The user is ``scope["user_id"]`` (set once at connect by the stream consumer, ``realtime.auth``),
    so users behind one address have their own buckets and an admin's tier pin applies to sockets.
    """
    user_id = scope.get("user_id")
    if user_id is not None:
        return keys.user_subject(user_id)  # type: ignore[arg-type]
    client = scope.get("client") or ("unknown", 0)
    return keys.ip_subject(str(client[0]))  # type: ignore[index]


def _ws_frame_admit(subject: str) -> FrameRefusal | None:
    shed = load_shed_check(priority="low")
    if shed is not None:
        return FrameRefusal(code="overloaded", retry_after=float(shed))
    try:
        decision = rate_limit_check(subject=subject, service="ws_messages")
    except RateLimiterUnavailable as exc:
        return FrameRefusal(code="unavailable", retry_after=float(exc.retry_after))
    if not decision.allowed:
        return FrameRefusal(code="rate_limited", retry_after=decision.retry_after)
    return None


async def ws_frame_admit(scope: dict[str, Any]) -> FrameRefusal | None:
    """Admit one inbound client frame (``None``) or say why not; runs off the event loop.

    Frames are low-priority work, shed first under load (``gateway.overload``), then each spends a
    ``ws_messages`` token. With the limiter down and failing closed the frame is refused. The stream
    consumer calls it through ``realtime.extensions.frame_admit`` (registered in ``GatewayConfig.ready``).
    """
    from asgiref.sync import sync_to_async

    return await sync_to_async(_ws_frame_admit, thread_sensitive=False)(ws_frame_subject(scope))


SYSTEM_USERNAME = "chorus-system"


def system_user_ensure() -> int:
    """The id of the user system comments are posted as, created on first use.

    It has an unusable password, so nobody can sign in as it.
    """
    from django.contrib.auth import get_user_model

    system_user, created = get_user_model().objects.get_or_create(username=SYSTEM_USERNAME)
    if created:
        system_user.set_unusable_password()
        system_user.save(update_fields=["password"])
    return system_user.pk
