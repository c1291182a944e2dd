"""The WebSocket consumer spends a ``ws_messages`` token per inbound frame."""

from tests.gateway.conftest import WS_CAPACITY
from tests.support.processes import AsgiNode
from tests.support.ws import WsClient


def test_inbound_frames_beyond_the_bucket_get_rate_limited_error_frames(tuned_nodes: list[AsgiNode], stream) -> None:  # type: ignore[no-untyped-def]
    """A burst of pings: the bucket's worth are answered, the rest refused, the socket stays open."""
    client = WsClient(f"{tuned_nodes[0].ws}/ws/streams/{stream.slug}/")
    try:
        burst = WS_CAPACITY * 3
        for _ in range(burst):
            client.send({"type": "ping"})

        def answered(frames: list[dict]) -> list[dict]:  # type: ignore[type-arg]
            replies = [f for f in frames if f["type"] in ("pong", "error")]
            return replies if len(replies) >= burst else []

        replies = client.wait_for(answered, timeout=10, what="an answer to every ping")
        pongs = sum(1 for f in replies if f["type"] == "pong")
        refused = [f for f in replies if f["type"] == "error"]
        assert WS_CAPACITY <= pongs <= WS_CAPACITY + 2
        assert refused and all(f["code"] == "rate_limited" for f in refused)
        assert client.close_code is None
    finally:
        client.close()
