"""The limiter's fallback while its Redis is unreachable: a token bucket per process.

Each node then enforces the same per-subject limits on its own, so the cluster admits at most
"nodes x limit" instead of nothing (fail closed) or everything (fail open). The state is small
(two floats per active subject and service), bounded, and forgotten once Redis is back.
"""

import threading
import time

MAX_ENTRIES = 100_000


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
            tokens = min(capacity, tokens + (now - last) * rate)
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
