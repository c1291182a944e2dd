"""Backpressure on real nodes: credit flow control, coalescing, slow clients, inbound rate limit."""

import itertools
import threading
import time
from collections.abc import Iterator

import pytest
import websockets

from realtime import protocol
from realtime.models import Stream
from tests.conftest import Stack
from tests.support.events import append_events, publish_snapshot
from tests.support.processes import AsgiNode, wait_until
from tests.support.rawws import RawWs
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)

STALL_SECONDS = 3


@pytest.fixture(scope="module", params=["daphne", "uvicorn"])
def tight_node(request: pytest.FixtureRequest, django_db_setup: None) -> Iterator[AsgiNode]:
    """A node (of each ASGI server) with small per-socket limits, so a stuck client hits them quickly."""
    node = AsgiNode(
        f"node-tight-{request.param}",
        server=request.param,
        env={
            "CHORUS_WS_MAX_WRITE_BUFFER": str(64 * 1024),
            "CHORUS_WS_SEND_BUFFER": "50",
            "CHORUS_WS_STALL_SECONDS": str(STALL_SECONDS),
            "CHORUS_NODE_POOL": "tight",
        },
    ).start()
    try:
        yield node.wait_ready()
    finally:
        node.stop()


def test_credit_holds_events_until_the_client_grants_more(live: Stack, stream: Stream) -> None:
    """With credit 3 a client gets exactly 3 events; more credit releases the rest in order."""
    append_events(stream.id, 10)
    client = WsClient(f"{live.nodes[0].ws}/ws/streams/{stream.slug}/?after=0&credit=3")
    client.wait_for_seq(3)
    client.send({"type": "ping"})
    client.wait_for(lambda frames: any(f["type"] == "pong" for f in frames), timeout=10, what="pong")
    assert [e["seq"] for e in client.events()] == [1, 2, 3]

    append_events(stream.id, 5)  # live events while the client has no credit are held too
    client.send({"type": "credit", "n": 4})
    client.wait_for_seq(7)
    client.send({"type": "credit", "n": 100})
    assert [e["seq"] for e in client.wait_for_seq(15)] == list(range(1, 16))
    client.close()


@pytest.mark.parametrize("node", [0, 1], ids=["uvicorn", "daphne"])
def test_resync_waits_for_credit_and_spends_none(live: Stack, stream: Stream, node) -> None:
    """A resync asked with no credit left is held until credit arrives; the re-sent events spend none."""
    append_events(stream.id, 5)
    client = WsClient(f"{live.nodes[node].ws}/ws/streams/{stream.slug}/?after=0&credit=5")
    client.wait_for_seq(5)
    client.send({"type": "resync", "after": 2})
    client.send({"type": "ping"})  # answered after the resync frame was handled
    client.wait_for(lambda frames: any(f["type"] == "pong" for f in frames), timeout=10, what="pong")
    assert [e["seq"] for e in client.events()] == [1, 2, 3, 4, 5]

    append_events(stream.id, 1)
    client.send({"type": "credit", "n": 1})  # one credit: the whole resync, then seq 6
    client.wait_for(lambda frames: len([f for f in frames if f["type"] == "event"]) == 9, timeout=10, what="9")
    assert [e["seq"] for e in client.events()] == [1, 2, 3, 4, 5, 3, 4, 5, 6]
    client.close()


def test_bad_credit_frame_gets_an_error_frame(live: Stack, stream: Stream) -> None:
    """A credit frame with a bad n is refused with an error frame naming n; the socket stays open."""
    client = WsClient(f"{live.nodes[0].ws}/ws/streams/{stream.slug}/")
    client.send({"type": "credit", "n": -1})
    client.wait_for(lambda frames: any(f["type"] == "error" for f in frames), timeout=10, what="error")
    error = next(f for f in client.frames if f["type"] == "error")
    assert error["code"] == "bad_frame" and "'n'" in error["message"]
    assert client.close_code is None
    client.close()


def test_inbound_flood_gets_an_error_frame_then_close_4429(live: Stack, stream: Stream) -> None:
    """A client sending far over the inbound rate is told once, then closed with 4429."""
    client = WsClient(f"{live.nodes[1].ws}/ws/streams/{stream.slug}/")
    for _ in range(200):
        try:
            client.send({"type": "ping"})
        except (websockets.ConnectionClosed, ConnectionError):
            break
    assert client.wait_closed() == protocol.CLOSE_RATE_LIMITED
    errors = [f for f in client.frames if f["type"] == "error"]
    assert [e["code"] for e in errors] == ["rate_limited"]


def test_snapshots_coalesce_for_a_lagging_client_and_events_still_all_arrive(
    tight_node: AsgiNode, stream: Stream
) -> None:
    """A client that stops reading gets only the latest snapshot when it reads again, and every event."""
    client = RawWs(tight_node.port, f"/ws/streams/{stream.slug}/?after=0")
    append_events(stream.id, 800, size=16 * 1024)  # far more than the socket's and the kernel's buffers hold
    wait_until(lambda: tight_node.metrics()["chorus_ws_stalled"] >= 1, timeout=20, what="the socket to stall")
    for value in range(30):
        publish_snapshot(stream.id, "test.counts", value)
    wait_until(lambda: tight_node.metrics()["chorus_ws_events_coalesced_total"] >= 25, timeout=10, what="coalescing")
    frames, _code = client.read_all(timeout=20, stop=lambda f: f.get("seq") == 800)
    snapshots = [f["value"] for f in frames if f["type"] == "snapshot"]
    assert snapshots[-1] == 29 and len(snapshots) <= 3
    assert [f["seq"] for f in frames if f["type"] == "event"] == list(range(1, 801))
    client.close()


def test_client_that_never_reads_is_bounded_then_closed_with_its_last_seq(tight_node: AsgiNode, stream: Stream) -> None:
    """Many events to a client that never reads: server memory stays bounded, then 4408 with last_seq."""
    baseline = tight_node.rss_bytes()
    peak = [baseline]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            peak[0] = max(peak[0], tight_node.rss_bytes())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    client = RawWs(tight_node.port, f"/ws/streams/{stream.slug}/")
    before = tight_node.metrics()["chorus_ws_slow_disconnects_total"]
    append_events(stream.id, 3000, size=16 * 1024)  # 48 MB of frames
    wait_until(
        lambda: tight_node.metrics()["chorus_ws_slow_disconnects_total"] > before,
        timeout=STALL_SECONDS + 30,
        interval=0.02,
        what="the stuck client to be closed",
    )
    frames, code = client.read_all(timeout=10)
    stop.set()
    sampler.join()
    client.close()

    assert peak[0] - baseline < 16 * 1024 * 1024, f"server grew by {(peak[0] - baseline) >> 20} MiB"
    assert code == protocol.CLOSE_TOO_FAR_BEHIND
    error = frames[-1]
    assert error["type"] == "error" and error["code"] == "too_far_behind"
    delivered = [f["seq"] for f in frames if f["type"] == "event"]
    assert error["last_seq"] == delivered[-1] and delivered == list(range(1, delivered[-1] + 1))
    assert delivered[-1] < 3000


def test_resync_flood_from_a_client_that_never_reads_is_bounded_then_closed(
    tight_node: AsgiNode, stream: Stream
) -> None:
    """Resyncs of a long log asked again and again by a client that never reads: the replay goes
    through the socket's write-buffer limit, server memory stays bounded, then 4408 with last_seq."""
    append_events(stream.id, 600, size=4 * 1024)  # 2.4 MB of frames per full resync
    baseline = tight_node.rss_bytes()
    peak = [baseline]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            peak[0] = max(peak[0], tight_node.rss_bytes())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    before = tight_node.metrics()["chorus_ws_slow_disconnects_total"]
    client = RawWs(tight_node.port, f"/ws/streams/{stream.slug}/")  # live only: caught up at 600
    closed = lambda: tight_node.metrics()["chorus_ws_slow_disconnects_total"] > before  # noqa: E731
    deadline = time.monotonic() + STALL_SECONDS + 30
    while not closed():  # a resync every 0.1 s (within the inbound rate) until the server gives up
        assert time.monotonic() < deadline, "the client flooding resyncs without reading was never closed"
        try:
            client.send('{"type": "resync", "after": 0}')
        except OSError:
            break  # closed by the server meanwhile
        time.sleep(0.1)  # the client's pace, not a wait for the server
    wait_until(closed, timeout=10, what="the close to be counted")
    frames, code = client.read_all(timeout=10)
    stop.set()
    sampler.join()
    client.close()

    assert peak[0] - baseline < 16 * 1024 * 1024, f"server grew by {(peak[0] - baseline) >> 20} MiB"
    assert code == protocol.CLOSE_TOO_FAR_BEHIND
    error = frames[-1]
    assert error["type"] == "error" and error["code"] == "too_far_behind" and error["last_seq"] == 600
    resent = [f["seq"] for f in frames if f["type"] == "event"]
    # Each resync asked again restarts the range from 1; within a run, every event in order.
    assert resent[0] == 1 and all(seq in (prev + 1, 1) for prev, seq in itertools.pairwise(resent))
    assert max(resent) <= 600
