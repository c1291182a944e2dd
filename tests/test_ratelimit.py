"""The rate-limit package's named policies, each on its backend (real Redis for the shared ones)."""

import pytest
from django.test import override_settings

from project.ratelimit import POLICIES, owner_bucket, rate_limit_check, window_check
from project.redis import redis_client


def test_every_surface_has_a_named_policy() -> None:
    """Comments, reactions, writes, reads, WebSocket messages and frames, taps and the internal API."""
    assert {"comments", "reactions", "writes", "reads", "ws_messages", "ws_frames", "taps", "internal"} <= set(POLICIES)


def test_a_policy_is_used_only_on_its_backend() -> None:
    """Asking a per-socket policy of the shared limiter (or an unknown name) is a programming error."""
    with pytest.raises(ValueError):
        rate_limit_check(subject="test:x", service="ws_frames")
    with pytest.raises(ValueError):
        rate_limit_check(subject="test:x", service="nonsense")
    with pytest.raises(ValueError):
        owner_bucket("comments")


@override_settings(CHORUS_WS_INBOUND_BURST=3, CHORUS_WS_INBOUND_RATE=0.001)
def test_ws_frames_is_a_bucket_per_socket() -> None:
    """A socket's bucket admits its burst, then refuses; another socket's bucket is its own."""
    first, second = owner_bucket("ws_frames"), owner_bucket("ws_frames")
    assert [first.take() for _ in range(4)] == [True, True, True, False]
    assert second.take()


@override_settings(CHORUS_REACTION_TAPS_PER_SECOND=2)
def test_taps_is_a_window_on_the_redis_server_clock() -> None:
    """The third tap within one second of the Redis server's clock waits for the next second."""
    client = redis_client()
    subject = "test:taps-window"
    # a window turning over on the server's clock mid-burst starts afresh: try a few bursts
    for _attempt in range(3):
        client.delete(*client.keys(f"*{{{subject}}}*") or ["none"])
        results = [window_check(policy="taps", subject=subject, client=client) for _ in range(3)]
        if results[2] is not None:
            break
    assert results[0] is None and results[1] is None
    assert results[2] is not None and 0 < results[2] <= 1
