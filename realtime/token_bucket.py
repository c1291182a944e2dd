"""An in-memory token bucket: the inbound frame rate limit of one WebSocket connection.

Per connection, so it needs no shared store: a socket lives on one node.
"""

import time


class TokenBucket:
    def __init__(self, *, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.updated = time.monotonic()

    def take(self) -> bool:
        """Spend one token if there is one; False means the caller is over its rate."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False
