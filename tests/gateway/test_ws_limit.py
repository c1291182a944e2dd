"""The WebSocket consumer spends a ``ws_messages`` token per inbound frame: per user, per address when anonymous."""

from typing import Any

from rest_framework.authtoken.models import Token

from gateway.services import user_tier_set
from realtime.models import Stream
from tests.factories import UserFactory
from tests.gateway.conftest import WS_CAPACITY
from tests.support.processes import AsgiNode
from tests.support.ws import WsClient


def _ping_burst(client: WsClient, count: int) -> tuple[int, list[dict[str, Any]]]:
    """Send ``count`` pings at once; the number answered with a pong, and the refusals."""
    already = len(client.frames)
    for _ in range(count):
        client.send({"type": "ping"})

    def answered(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
        replies = [f for f in frames[already:] if f["type"] in ("pong", "error")]
        return replies if len(replies) >= count else []

    replies = client.wait_for(answered, timeout=10, what=f"an answer to each of {count} pings")
    return sum(1 for f in replies if f["type"] == "pong"), [f for f in replies if f["type"] == "error"]


def _user_socket(node: AsgiNode, slug: str) -> tuple[Any, WsClient]:
    user = UserFactory.create()
    token = Token.objects.create(user=user).key
    return user, WsClient(f"{node.ws}/ws/streams/{slug}/?token={token}")


def test_inbound_frames_beyond_the_bucket_get_rate_limited_error_frames(
    tuned_nodes: list[AsgiNode], stream: Stream
) -> None:
    """A burst of pings: the bucket's worth are answered, the rest refused, the socket stays open."""
    client = WsClient(f"{tuned_nodes[0].ws}/ws/streams/{stream.slug}/")
    try:
        pongs, refused = _ping_burst(client, WS_CAPACITY * 3)
        assert WS_CAPACITY <= pongs <= WS_CAPACITY + 2
        assert refused and all(f["code"] == "rate_limited" for f in refused)
        assert client.close_code is None
    finally:
        client.close()


def test_two_users_behind_one_address_have_their_own_buckets(tuned_nodes: list[AsgiNode], stream: Stream) -> None:
    """One signed-in user floods; another on the same address (a NAT, a proxy) is not limited for it."""
    # given: two users' sockets from the same address, on two nodes
    _, flooder = _user_socket(tuned_nodes[0], stream.slug)
    _, neighbour = _user_socket(tuned_nodes[1], stream.slug)
    try:
        # when: the first empties its bucket
        _, refused = _ping_burst(flooder, WS_CAPACITY * 3)
        assert refused and all(f["code"] == "rate_limited" for f in refused)

        # then: the second still has a full bucket of its own
        pongs, refused = _ping_burst(neighbour, WS_CAPACITY)
        assert (pongs, refused) == (WS_CAPACITY, [])
    finally:
        flooder.close()
        neighbour.close()


def test_an_admins_tier_pin_applies_to_a_users_socket(tuned_nodes: list[AsgiNode], stream: Stream) -> None:
    """A user pinned ``trusted`` gets the trusted tier's bucket on a socket, not the regular one."""
    user, client = _user_socket(tuned_nodes[0], stream.slug)
    try:
        # given: an admin pins the user as trusted (capacity 60 frames, regular is WS_CAPACITY here)
        user_tier_set(user_id=user.pk, tier="trusted", pinned=True)

        # then: a burst three times the regular capacity is answered in full
        pongs, refused = _ping_burst(client, WS_CAPACITY * 3)
        assert (pongs, refused) == (WS_CAPACITY * 3, [])
    finally:
        client.close()
