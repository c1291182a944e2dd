"""Reconnect delays and the pace of the frames a socket sends (the same as @chorus/client's)."""

import random
import time


def backoff(attempt: int, low: float, high: float) -> float:
    """Full-jitter exponential backoff in seconds: ``low`` plus a random share of
    ``low * 2**attempt``, capped at ``high``."""
    ceiling = min(high, low * 2 ** min(attempt, 30))
    return min(high, low + random.random() * ceiling)


class TokenBucket:
    """The server drops frames over its inbound limit (20 a second, bursts of 40, by default), and
    a dropped credit frame would stall the stream: the client stays well under it."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.at = time.monotonic()

    def take(self) -> bool:
        self._refill()
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def wait(self) -> float:
        """Seconds until the next token."""
        self._refill()
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
