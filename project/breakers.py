"""Circuit breakers around the stores on the request path: fail fast while one is down.

A breaker opens after ``CHORUS_BREAKER_FAIL_MAX`` consecutive failures; while open, calls fail at
once (no connect timeout per request), and after ``CHORUS_BREAKER_RESET_SECONDS`` one trial call is
let through: success closes it again, so recovery needs no operator. State is per process on
purpose: a breaker kept in Redis could not open when Redis is the thing that is down.
"""

import logging
import math
import time

import pybreaker
from django.conf import settings

logger = logging.getLogger(__name__)


class _LogTransitions(pybreaker.CircuitBreakerListener):
    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        old_name = old_state.name if old_state is not None else None
        logger.warning("circuit breaker %s: %s -> %s", cb.name, old_name, new_state.name)


def _breaker(name: str) -> pybreaker.CircuitBreaker:
    return pybreaker.CircuitBreaker(
        fail_max=settings.CHORUS_BREAKER_FAIL_MAX,
        reset_timeout=settings.CHORUS_BREAKER_RESET_SECONDS,
        name=name,
        listeners=[_LogTransitions()],
    )


redis_breaker = _breaker("redis")  # the limiter's Redis
cache_breaker = _breaker("cache")  # Redis behind read caches and the publish schedule (never a 503)
broker_breaker = _breaker("broker")
database_breaker = _breaker("database")


def breaker_retry_after(breaker: pybreaker.CircuitBreaker) -> int:
    """Whole seconds until an open breaker lets a trial call through (at least 1)."""
    opened_at = breaker._state_storage.opened_at
    if opened_at is None:
        return max(1, int(breaker.reset_timeout))
    elapsed = time.time() - opened_at.timestamp()
    return max(1, math.ceil(breaker.reset_timeout - elapsed))
