"""Load shedding by priority: refuse cheap-to-lose work first when the system falls behind.

Three signals, all per node and cheap: the publish lag (how long the oldest accepted comment has
waited for its stream's sequencer, read from PostgreSQL at most every ``DEPTH_TTL`` seconds), the
Celery queue depth in the Redis broker (as often) and this node's average API latency. A burst
the sequencer absorbs raises none of them much: comments are refused only when the pipeline
behind them really falls behind. ``low`` work (reaction taps, WebSocket frames such as presence
pings) is shed at the lower thresholds, ``normal`` work (comments) only at the higher ones; the
internal API is never shed.
"""

import logging
import threading
import time
from functools import lru_cache

import pybreaker
import redis
from django.conf import settings
from django.db import DatabaseError

from comments.selectors import comments_pending_oldest_age
from gateway.breakers import broker_breaker

logger = logging.getLogger(__name__)

DEPTH_TTL = 0.5
LATENCY_WEIGHT = 0.1  # weight of the newest sample in the moving average
SHED_RETRY_AFTER = 2
PRIORITIES = ("low", "normal", "critical")

_lock = threading.Lock()
_depth = (0, 0.0)  # (queue depth, monotonic time read)
_lag = (0.0, 0.0)  # (publish lag in seconds, monotonic time read)
_latency_ms = 0.0


@lru_cache(maxsize=1)
def _broker() -> redis.Redis | None:
    url = settings.CELERY_BROKER_URL
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    return redis.Redis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.25)


def _read_depth(client: redis.Redis) -> int:
    with client.pipeline(transaction=False) as pipe:
        for queue in settings.CHORUS_SHED_QUEUES:
            pipe.llen(queue)
        return sum(pipe.execute())


def queue_depth() -> int:
    """Tasks waiting in the broker, at most ``DEPTH_TTL`` seconds old; 0 when it cannot be read.

    An unreadable broker does not shed (the broker's own breaker and the outbox sweep cover it).
    """
    global _depth
    depth, read_at = _depth
    now = time.monotonic()
    if now - read_at < DEPTH_TTL:
        return depth
    client = _broker()
    if client is None:
        return 0
    try:
        depth = broker_breaker.call(_read_depth, client)
    except (redis.RedisError, pybreaker.CircuitBreakerError):
        depth = 0
    with _lock:
        _depth = (depth, now)
    return depth


def publish_lag() -> float:
    """Seconds the oldest comment has waited for publication, at most ``DEPTH_TTL`` seconds old;
    0 when it cannot be read (the database breaker answers for a database that is down)."""
    global _lag
    lag, read_at = _lag
    now = time.monotonic()
    if now - read_at < DEPTH_TTL:
        return lag
    try:
        lag = comments_pending_oldest_age()
    except DatabaseError:
        lag = 0.0
    with _lock:
        _lag = (lag, now)
    return lag


def latency_record(*, milliseconds: float) -> None:
    """Feed one API request's duration into this node's moving average."""
    global _latency_ms
    with _lock:
        _latency_ms += LATENCY_WEIGHT * (milliseconds - _latency_ms)


def load_shed_check(*, priority: str) -> int | None:
    """``None`` to go ahead, else the seconds a client should wait (answer 503 / an error frame)."""
    if priority == "critical":
        return None
    if priority not in PRIORITIES:
        raise ValueError(f"unknown priority {priority!r}")
    low = priority == "low"
    factor = 1 if low else 2
    depth_limit = settings.CHORUS_SHED_QUEUE_LOW if low else settings.CHORUS_SHED_QUEUE_HIGH
    lag_limit = settings.CHORUS_SHED_PUBLISH_LAG_LOW if low else settings.CHORUS_SHED_PUBLISH_LAG_HIGH
    if (
        publish_lag() >= lag_limit
        or queue_depth() >= depth_limit
        or _latency_ms >= settings.CHORUS_SHED_LATENCY_MS * factor
    ):
        logger.info(
            "shedding %s-priority work (publish lag %.1f s, queue %s, latency %.0f ms)",
            priority,
            _lag[0],
            _depth[0],
            _latency_ms,
        )
        return SHED_RETRY_AFTER
    return None
