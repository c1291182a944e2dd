"""The in-memory backend of the rate limiter: token buckets of this process, same maths as Redis'.

Two uses. ``TokenBucket`` is one bucket held by its owner, e.g. a WebSocket connection's inbound
frame limit (``ws_frames``): a socket lives on one node, so it needs no shared store.
``LocalBuckets`` is the fallback while the limiter's Redis is unreachable: each node then enforces
the same per-subject limits on its own, so the cluster admits at most "nodes x limit" instead of
nothing (fail closed) or everything (fail open). The state is small
(two floats per active subject and service), bounded, and forgotten once Redis is back.
"""

import threading
import time

MAX_ENTRIES = 100_000


def refill(*, tokens: float, last: float, now: float, capacity: float, rate: float) -> float:
    """Tokens in a bucket that held ``tokens`` at ``last``, at ``now``."""
    return min(capacity, tokens + max(0.0, now - last) * rate)


class TokenBucket:
    """One bucket of ``burst`` tokens refilled at ``rate`` per second; not thread-safe (one owner)."""

    def __init__(self, *, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.updated = time.monotonic()

    def take(self, cost: int = 1) -> bool:
        """Spend ``cost`` tokens if there are enough; False means the owner is over its rate."""
        now = time.monotonic()
        self.tokens = refill(tokens=self.tokens, last=self.updated, now=now, capacity=self.burst, rate=self.rate)
        self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


class LocalBuckets:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}

    def take(
        self, *, subject: str, service: str, capacity: float, rate: float, cost: int = 1
    ) -> tuple[bool, float, float]:
        """Spend ``cost`` tokens; returns (allowed, remaining, seconds until one token is back)."""
        now = time.monotonic()
        key = (subject, service)
        with self._lock:
            tokens, last = self._buckets.get(key, (capacity, now))
            tokens = refill(tokens=tokens, last=last, now=now, capacity=capacity, rate=rate)
            allowed = tokens >= cost
            if allowed:
                tokens -= cost
            if len(self._buckets) >= MAX_ENTRIES and key not in self._buckets:
                self._buckets.clear()  # crude but bounded: forgetting only ever admits more
            self._buckets[key] = (tokens, now)
        wait = 0.0 if tokens >= 1 else (1 - tokens) / rate if rate > 0 else float("inf")
        return allowed, tokens, wait

    def clear(self) -> None:
        with self._lock:
            self._buckets.clear()


local_buckets = LocalBuckets()
