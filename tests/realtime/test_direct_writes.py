"""The hub's two ways to a socket, under each ASGI server: direct writes and the per-socket sender.

Events spaced apart reach idle sockets by a direct write from the hub; a burst goes through each
socket's buffer and sender. Either way every subscriber gets every event once, in order.
"""

import time
from collections.abc import Iterator

import pytest

from realtime.models import Stream
from tests.support.events import append_events
from tests.support.processes import AsgiNode
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module", params=["daphne", "uvicorn"])
def node(request: pytest.FixtureRequest, django_db_setup: None) -> Iterator[AsgiNode]:
    node = AsgiNode(f"node-direct-{request.param}", server=request.param, env={"CHORUS_NODE_POOL": "direct"})
    node.start()
    try:
        yield node.wait_ready()
    finally:
        node.stop()


def _seqs(client: WsClient) -> list[int]:
    return [event["seq"] for event in client.events()]


def test_spaced_events_are_written_directly_and_a_burst_through_the_senders(node, stream: Stream) -> None:
    clients = [WsClient(f"{node.ws}/ws/streams/{stream.slug}/") for _ in range(3)]
    try:
        for client in clients:
            client.wait_for(lambda frames: any(f.get("type") == "hello" for f in frames), timeout=10, what="hello")
        before = node.metrics()

        # given idle subscribers, when events come one at a time, the hub writes them itself
        for n in range(1, 11):
            append_events(stream.id, 1)
            for client in clients:
                client.wait_for_seq(n, timeout=10)
            time.sleep(0.02)  # pacing: the next event comes after this one's fan-out, not in a burst
        spaced = node.metrics()
        direct = spaced["chorus_ws_frames_direct_total"] - before["chorus_ws_frames_direct_total"]
        assert direct >= 0.9 * 30, f"only {direct} of 30 frames were written directly"

        # when a burst arrives, frames are queued for each socket's sender, which writes them in order
        append_events(stream.id, 300)
        for client in clients:
            client.wait_for_seq(310, timeout=30)
        after = node.metrics()  # every frame arrived, so every send has been counted
        sent = after["chorus_ws_frames_sent_total"] - spaced["chorus_ws_frames_sent_total"]
        burst_direct = after["chorus_ws_frames_direct_total"] - spaced["chorus_ws_frames_direct_total"]
        assert sent - burst_direct > 0, "no frame of the burst went through a sender"

        # then every subscriber has every event exactly once, in order
        for client in clients:
            assert _seqs(client) == list(range(1, 311))
    finally:
        for client in clients:
            client.close()
