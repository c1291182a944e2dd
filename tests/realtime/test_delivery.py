"""WebSocket delivery against real nodes: resume, resync, repair of lost publishes, bad frames."""

import uuid

import httpx
import pytest
from django.db import transaction

from realtime import protocol
from realtime.models import Stream, StreamEvent
from tests.conftest import ApiUser, Stack
from tests.support.api import post_comment, wait_published
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)


def _post_n(http, base, slug, headers, n, prefix="c"):
    ids = []
    for i in range(n):
        response = post_comment(http, base, slug, headers, f"{prefix}{i}")
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    wait_published(ids)
    return ids


def test_reconnect_with_after_resumes_with_no_gap_and_no_duplicate(
    live: Stack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """A client that leaves at seq k and comes back with after=k gets exactly k+1..n, then live events."""
    node_a, node_b = live.nodes
    first = WsClient(f"{node_a.ws}/ws/streams/{stream.slug}/?after=0")
    _post_n(http, node_a.http, stream.slug, api_user.headers, 5)
    k = first.wait_for_seq(5)[-1]["seq"]
    first.close()

    _post_n(http, node_b.http, stream.slug, api_user.headers, 7, prefix="later")  # seq 6..12 while away
    again = WsClient(f"{node_b.ws}/ws/streams/{stream.slug}/?after={k}")
    _post_n(http, node_a.http, stream.slug, api_user.headers, 1, prefix="sentinel")  # seq 13, live
    events = again.wait_for_seq(13)
    assert [e["seq"] for e in events] == list(range(k + 1, 14))
    again.close()


def test_replay_from_zero_then_live_has_no_seam(
    live: Stack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """Replay of the log and live events join without a gap or a repeat."""
    base = live.nodes[0].http
    _post_n(http, base, stream.slug, api_user.headers, 30)
    client = WsClient(f"{live.nodes[1].ws}/ws/streams/{stream.slug}/?after=0")
    _post_n(http, base, stream.slug, api_user.headers, 10, prefix="live")
    assert [e["seq"] for e in client.wait_for_seq(40)] == list(range(1, 41))
    client.close()


def test_resync_frame_resends_the_missing_range(
    live: Stack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """{"type": "resync", "after": N} re-sends every delivered event after N."""
    client = WsClient(f"{live.nodes[0].ws}/ws/streams/{stream.slug}/?after=0")
    _post_n(http, live.nodes[0].http, stream.slug, api_user.headers, 6)
    client.wait_for_seq(6)
    client.send({"type": "resync", "after": 3})
    client.wait_for(lambda frames: len([f for f in frames if f.get("type") == "event"]) == 9, timeout=10, what="9")
    assert [e["seq"] for e in client.events()] == [1, 2, 3, 4, 5, 6, 4, 5, 6]
    client.close()


def _append_without_publishing(stream_id: int, n: int) -> None:
    """Write events to the log exactly as the service does, but as if every publish was lost."""
    with transaction.atomic():
        stream = Stream.objects.select_for_update().get(id=stream_id)
        for _ in range(n):
            stream.last_seq += 1
            StreamEvent.objects.create(
                stream=stream, seq=stream.last_seq, event_id=uuid.uuid4(), type="test.lost", payload={}
            )
        stream.save(update_fields=["last_seq"])


def test_lost_publish_is_repaired_by_the_next_event(
    live: Stack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """Events whose publish never happened reach clients when a later event shows the gap."""
    client = WsClient(f"{live.nodes[1].ws}/ws/streams/{stream.slug}/")
    _append_without_publishing(stream.id, 3)
    _post_n(http, live.nodes[0].http, stream.slug, api_user.headers, 1)  # seq 4, published
    events = client.wait_for_seq(4)
    assert [e["seq"] for e in events] == [1, 2, 3, 4]
    client.close()


def test_lost_final_publish_is_repaired_by_the_tail_check(live: Stack, stream: Stream) -> None:
    """A lost publish with nothing after it still arrives, via the node's periodic tail check."""
    client = WsClient(f"{live.nodes[0].ws}/ws/streams/{stream.slug}/")
    _append_without_publishing(stream.id, 2)
    assert [e["seq"] for e in client.wait_for_seq(2, timeout=15)] == [1, 2]
    client.close()


@pytest.mark.parametrize("query", ["after=abc", "after=-3", "after=1.5", "after=99"])
def test_bad_after_closes_with_4400_and_an_error_frame(live: Stack, stream: Stream, query) -> None:
    client = WsClient(f"{live.nodes[0].ws}/ws/streams/{stream.slug}/?{query}")
    assert client.wait_closed() == protocol.CLOSE_BAD_REQUEST
    assert client.frames[0]["type"] == "error" and "after" in client.frames[0]["message"]


def test_unknown_stream_closes_with_4404(live: Stack, transactional_db: None) -> None:
    client = WsClient(f"{live.nodes[0].ws}/ws/streams/no-such-stream/")
    assert client.wait_closed() == protocol.CLOSE_STREAM_NOT_FOUND
    assert client.frames[0] == {"type": "error", "code": "stream_not_found", "message": "no stream 'no-such-stream'"}


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[1, 2]",
        '{"type": "dance"}',
        '{"no": "type"}',
        '{"type": "resync", "after": "x"}',
        '{"type": "resync", "after": -1}',
        '{"type": "resync"}',
        '{"type": "resync", "after": true}',
        "x" * 10000,
    ],
)
def test_malformed_client_frames_get_an_error_frame_and_the_socket_survives(live: Stack, stream: Stream, frame) -> None:
    client = WsClient(f"{live.nodes[0].ws}/ws/streams/{stream.slug}/")
    client.send(frame)
    client.wait_for(lambda frames: any(f["type"] == "error" for f in frames), timeout=10, what="error frame")
    client.send({"type": "ping"})
    client.wait_for(lambda frames: any(f["type"] == "pong" for f in frames), timeout=10, what="pong")
    assert client.close_code is None
    client.close()


def test_binary_frames_are_refused_with_an_error_frame(live: Stack, stream: Stream) -> None:
    client = WsClient(f"{live.nodes[0].ws}/ws/streams/{stream.slug}/")
    client.send_bytes(b"\x00\x01binary")
    client.wait_for(lambda frames: any(f["type"] == "error" for f in frames), timeout=10, what="error frame")
    assert "binary" in next(f for f in client.frames if f["type"] == "error")["message"]
    client.close()


def test_snapshots_reach_every_node_and_are_not_sequenced(live: Stack, stream: Stream) -> None:
    """A snapshot frame (latest-wins state) is fanned out by every node without touching the sequence."""
    from realtime.events import snapshot_broadcast

    clients = [WsClient(f"{node.ws}/ws/streams/{stream.slug}/") for node in live.nodes]
    snapshot_broadcast(stream_id=stream.id, kind="test", frame='{"type":"test","n":1}')
    for client in clients:
        client.wait_for(lambda frames: {"type": "test", "n": 1} in frames, timeout=10, what="snapshot")
        client.close()
    assert Stream.objects.get(id=stream.id).last_seq == 0


def test_a_snapshot_overtaken_by_a_newer_version_is_not_forwarded(live: Stack, stream: Stream) -> None:
    """Publishers on several nodes can cross in Redis: a node forwards only newer versions of a kind."""
    from realtime.events import snapshot_broadcast

    client = WsClient(f"{live.nodes[0].ws}/ws/streams/{stream.slug}/")
    client.wait_for(lambda frames: any(f.get("type") == "hello" for f in frames), timeout=10, what="hello")
    for version in (5, 3, 5, 6):  # 3 arrives after 5 (late), then 5 again (a duplicate)
        snapshot_broadcast(stream_id=stream.id, kind="test", frame=f'{{"type":"test","v":{version}}}', version=version)
    client.wait_for(lambda frames: {"type": "test", "v": 6} in frames, timeout=10, what="version 6")
    assert [f["v"] for f in client.frames if f.get("type") == "test"] in ([5, 6], [6])
    client.close()
