"""The token-bucket script and ``rate_limit_check`` against the real Redis."""

import time
import uuid
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

from project.ratelimit import RateLimiterUnavailable, keys, limiter, rate_limit_check
from project.ratelimit.redis_backend import TokenBucket
from project.redis import redis_client
from tests.support.processes import free_port

LIMITS = {"regular": (5, 1.0), "hot": (2, 0.5), "trusted": (20, 5.0), "internal": (100, 50.0)}


def _take(bucket: TokenBucket, subject: str, **overrides: object) -> Any:
    args: dict[str, Any] = {
        "bucket_key": keys.bucket_key(subject=subject, service="comments"),
        "subject_key": keys.subject_key(subject=subject),
        "pin_key": keys.pin_key(subject=subject),
        "limits": LIMITS,
        "hot_above": 1000.0,
        "regular_below": 500.0,
        "hold_seconds": 60.0,
        "window_seconds": 10.0,
        **overrides,
    }
    return bucket.take(**args)


def test_bucket_admits_capacity_then_refuses_with_retry_after() -> None:
    """A full bucket admits exactly its capacity at once, then says when the next token comes."""
    bucket = TokenBucket(limiter.limiter_redis())
    subject = f"test:{uuid.uuid4()}"
    results = [_take(bucket, subject) for _ in range(7)]
    assert [r.allowed for r in results] == [True] * 5 + [False] * 2
    assert [r.remaining for r in results[:5]] == [4, 3, 2, 1, 0]
    refused = results[-1]
    assert refused.limit == 5
    assert 0.5 < refused.retry_after <= 1.0
    assert 4.0 < refused.reset_after <= 5.0


def test_hammering_promotes_to_hot_and_calm_returns_to_regular_only_after_hold() -> None:
    """Above the hot threshold the stricter tier applies; back to regular only after a calm hold."""
    bucket = TokenBucket(limiter.limiter_redis())
    subject = f"test:{uuid.uuid4()}"
    # rate = decayed request count / window; a lone request after a pause is about 10/s here
    tiers = {"hot_above": 25.0, "regular_below": 15.0, "hold_seconds": 0.3, "window_seconds": 0.1}

    def tier_after(pause: float) -> str:
        time.sleep(pause)
        return _take(bucket, subject, **tiers).tier

    # given: three quick requests (about 30/s) make the subject hot, with the hot limits
    assert [tier_after(0) for _ in range(3)] == ["regular", "regular", "hot"]
    assert _take(bucket, subject, **tiers).limit == 2
    # when: it calms down (10/s) and then bursts to 20/s, between the thresholds: still hot
    assert tier_after(0.4) == "hot"
    assert tier_after(0) == "hot"
    # then: calm again, it stays hot for the hold time, and only then becomes regular
    assert tier_after(0.4) == "hot"
    assert tier_after(0.35) == "regular"


def test_pinned_tier_wins_over_automatic_tier() -> None:
    """A pin written by the admin path decides the tier, whatever the subject's rate."""
    bucket = TokenBucket(limiter.limiter_redis())
    subject = f"test:{uuid.uuid4()}"
    limiter.limiter_redis().set(keys.pin_key(subject=subject), "trusted")
    result = _take(bucket, subject, hot_above=0.0)
    assert (result.tier, result.limit) == ("trusted", 20)


def test_unknown_service_is_a_programming_error() -> None:
    """Only the configured services have buckets."""
    with pytest.raises(ValueError):
        rate_limit_check(subject="test:x", service="nope")


@pytest.mark.parametrize("mode", ["open", "closed", "local"])
def test_unreachable_redis_fails_as_configured(mode: str) -> None:
    """With Redis unreachable the check admits (open), raises with a retry time (closed), or limits locally."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    redis_client.cache_clear()
    limiter._bucket.cache_clear()
    limiter.redis_breaker.close()
    try:
        small = {tier: {**table, "comments": [3, 0.01]} for tier, table in settings.CHORUS_RATE_LIMITS.items()}
        with override_settings(
            CHORUS_GATEWAY_REDIS_URL=dead, CHORUS_RATELIMIT_WHEN_REDIS_DOWN=mode, CHORUS_RATE_LIMITS=small
        ):
            if mode == "open":
                decision = rate_limit_check(subject="test:dead", service="comments")
                assert decision.allowed and decision.limit is None
            elif mode == "local":
                decisions = [rate_limit_check(subject="test:dead-local", service="comments") for _ in range(4)]
                assert all(d.allowed for d in decisions[:3]) and decisions[0].limit == 3
                assert not decisions[-1].allowed and decisions[-1].retry_after >= 1
            else:
                with pytest.raises(RateLimiterUnavailable) as raised:
                    rate_limit_check(subject="test:dead", service="comments")
                assert raised.value.retry_after >= 1
    finally:
        redis_client.cache_clear()
        limiter._bucket.cache_clear()
        limiter.redis_breaker.close()
