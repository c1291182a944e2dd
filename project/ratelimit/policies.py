"""The named rate-limit policies: what each limits, on which backend, with which numbers.

Tiered token buckets take their (capacity, refill per second) per tier from ``CHORUS_RATE_LIMITS``;
the others read their own settings when asked, so a test's settings override applies.
"""

import enum
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings


class Backend(enum.Enum):
    REDIS_TIERED = "redis-tiered"  # a token bucket per subject in Redis, limits by the subject's tier
    REDIS_WINDOW = "redis-window"  # a fixed one-second window per subject in Redis
    MEMORY = "memory"  # a token bucket in this process, kept by its owner


@dataclass(frozen=True)
class Policy:
    name: str
    backend: Backend
    what: str
    # (capacity or limit, refill per second); tiered policies read theirs per tier instead.
    limit: Callable[[], tuple[float, float]] = lambda: (0.0, 0.0)


POLICIES: dict[str, Policy] = {
    policy.name: policy
    for policy in (
        Policy("comments", Backend.REDIS_TIERED, "comment posts"),
        Policy("reactions", Backend.REDIS_TIERED, "reaction requests over HTTP"),
        Policy("writes", Backend.REDIS_TIERED, "other API writes"),
        Policy("reads", Backend.REDIS_TIERED, "API reads"),
        Policy("ws_messages", Backend.REDIS_TIERED, "inbound WebSocket frames, per user or address"),
        Policy("internal", Backend.REDIS_TIERED, "the internal API"),
        Policy(
            "taps",
            Backend.REDIS_WINDOW,
            "live taps per user and second",
            lambda: (float(settings.CHORUS_REACTION_TAPS_PER_SECOND), 0.0),
        ),
        Policy(
            "ws_frames",
            Backend.MEMORY,
            "inbound frames of one WebSocket connection",
            lambda: (float(settings.CHORUS_WS_INBOUND_BURST), float(settings.CHORUS_WS_INBOUND_RATE)),
        ),
    )
}


def policy_get(name: str) -> Policy:
    try:
        return POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown rate-limited service {name!r}") from None
