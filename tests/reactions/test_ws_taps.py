"""Taps as WebSocket frames: the user is resolved at connect; counts reach sockets on both nodes."""

from functools import partial

import httpx
import pytest
from rest_framework.authtoken.models import Token

from reactions.hot import stream_hot_pin
from reactions.redis_counters import counter_state_read, counts_of
from realtime.models import Stream
from tests.conftest import ApiUser, Stack
from tests.factories import UserFactory
from tests.support.processes import wait_until
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)


def _token() -> str:
    return Token.objects.create(user=UserFactory.create()).key


def _latest_counts(frames: list[dict]) -> dict | None:
    snapshots = [f for f in frames if f.get("type") == "reactions"]
    return max(snapshots, key=lambda f: f["version"])["counts"] if snapshots else None


def test_ws_taps_count_and_broadcast_counts_to_both_nodes(live: Stack, api_user: ApiUser, stream: Stream) -> None:
    """Token socket on node A taps; a watcher on node B sees the counts; a reconnect gets a snapshot."""
    tapper = WsClient(f"{live.nodes[0].ws}/ws/streams/{stream.slug}/?token={api_user.token}")
    watcher = WsClient(f"{live.nodes[1].ws}/ws/streams/{stream.slug}/")
    for _ in range(5):
        tapper.send({"type": "reaction", "kind": "heart"})
    tapper.send({"type": "reaction", "kind": "fire"})
    watcher.wait_for(lambda f: _latest_counts(f) == {"heart": 5, "fire": 1}, timeout=15, what="counts frame")
    assert counts_of(counter_state_read(stream_id=stream.id)) == {"fire": 1, "heart": 5}

    late = WsClient(f"{live.nodes[1].ws}/ws/streams/{stream.slug}/")
    late.wait_for(lambda f: _latest_counts(f) == {"heart": 5, "fire": 1}, timeout=10, what="snapshot on connect")
    for client in (tapper, watcher, late):
        client.close()


def test_ws_anonymous_and_bad_taps_get_error_frames(live: Stack, api_user: ApiUser, stream: Stream) -> None:
    """An anonymous socket's tap is refused; an unknown kind names 'kind'; the socket stays open."""
    anonymous = WsClient(f"{live.nodes[0].ws}/ws/streams/{stream.slug}/")
    anonymous.send({"type": "reaction", "kind": "heart"})
    anonymous.wait_for(lambda f: any(x.get("code") == "auth_required" for x in f), timeout=10, what="auth error")
    signed_in = WsClient(f"{live.nodes[0].ws}/ws/streams/{stream.slug}/?token={api_user.token}")
    signed_in.send({"type": "reaction", "kind": "meh"})
    signed_in.wait_for(lambda f: any("'kind'" in x.get("message", "") for x in f), timeout=10, what="kind error")
    signed_in.send({"type": "ping"})
    signed_in.wait_for(lambda f: any(x.get("type") == "pong" for x in f), timeout=10, what="pong")
    assert counts_of(counter_state_read(stream_id=stream.id)) == {}
    anonymous.close()
    signed_in.close()


def test_hot_stream_counts_are_coalesced_into_few_frames(
    live: Stack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """A stream pinned hot gets coalesced count frames (not one per tap) with the exact final count."""
    stream_hot_pin(stream_id=stream.id, mode="hot")
    try:
        watcher = WsClient(f"{live.nodes[1].ws}/ws/streams/{stream.slug}/")
        http_taps = 0

        def node_sees_hot(base: str) -> bool:
            # Each node picks the pin up within a second; a tap's answer says what the node saw.
            nonlocal http_taps
            response = http.post(
                f"{base}/api/v1/streams/{stream.slug}/reactions", json={"kind": "clap"}, headers=api_user.headers
            )
            assert response.status_code == 202, response.text
            http_taps += 1
            return response.json()["hot"]

        for node in live.nodes:  # paced under the per-user tap limit
            wait_until(partial(node_sees_hot, node.http), timeout=10, interval=0.1, what="the pin")
        watcher.wait_for(lambda f: _latest_counts(f) == {"clap": http_taps}, timeout=15, what="counts so far")
        before_burst = len([f for f in watcher.frames if f.get("type") == "reactions"])

        # when: a burst of 15 taps from each of two more users, with both nodes treating the stream as hot
        bursts = [WsClient(f"{live.nodes[i].ws}/ws/streams/{stream.slug}/?token={_token()}") for i in (0, 1)]
        for _ in range(15):
            for burst in bursts:
                burst.send({"type": "reaction", "kind": "clap"})

        # then: the exact total arrives in a few coalesced frames, in version order
        total = http_taps + 30
        watcher.wait_for(lambda f: _latest_counts(f) == {"clap": total}, timeout=15, what="coalesced counts")
        frames = [f for f in watcher.frames if f.get("type") == "reactions"]
        assert len(frames) - before_burst < 30 // 2
        versions = [f["version"] for f in frames]
        assert versions == sorted(versions)
        for client in (watcher, *bursts):
            client.close()
    finally:
        stream_hot_pin(stream_id=stream.id, mode=None)
