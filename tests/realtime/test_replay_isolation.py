"""Sockets replaying a long history do not hold up another stream's sockets.

Every database read of a node used to queue on asgiref's one thread: while a replay's read waited,
no other socket could even connect. Here the replays' reads are stopped outright (the event log
locked, as a long migration would) and another stream's socket must still connect and get live
frames; the replays then finish, complete and in order.
"""

import pytest

from realtime.models import Stream
from tests.factories import StreamFactory
from tests.support.events import append_events, publish_snapshot
from tests.support.locks import lock_waiters, table_locked
from tests.support.processes import AsgiNode, wait_until
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)

HISTORY = 300
REPLAYS = 4  # more than the node's replay threads: some replays wait for a thread, too


@pytest.mark.parametrize("server", ["uvicorn", "daphne"])
def test_another_stream_connects_and_gets_live_frames_while_replays_are_stuck(stream: Stream, server) -> None:
    node = AsgiNode(f"node-replays-{server}", server=server).start().wait_ready()
    other = StreamFactory.create(slug=f"{stream.slug}-other")
    append_events(stream.id, HISTORY)
    replays: list[WsClient] = []
    try:
        with table_locked("realtime_streamevent"):
            # given sockets replaying the log from the start, each waiting for its first page
            replays = [WsClient(f"{node.ws}/ws/streams/{stream.slug}/?after=0") for _ in range(REPLAYS)]
            wait_until(lambda: lock_waiters() >= 1, timeout=15, what="the replays to wait for the event log")

            # when a socket of another stream connects, it gets its hello and live frames meanwhile
            client = WsClient(f"{node.ws}/ws/streams/{other.slug}/")
            client.wait_for(lambda frames: any(f["type"] == "hello" for f in frames), timeout=15, what="hello")
            publish_snapshot(other.id, "test", 1)
            client.wait_for(lambda frames: any(f["type"] == "snapshot" for f in frames), timeout=15, what="live frame")
            assert all(not replay.events() for replay in replays)  # the replays are still stuck
            client.close()

        # then, the log readable again, every replay completes in order
        for replay in replays:
            assert [event["seq"] for event in replay.wait_for_seq(HISTORY, timeout=30)] == list(range(1, HISTORY + 1))
        assert Stream.objects.get(id=stream.id).last_seq == HISTORY
    finally:
        for replay in replays:
            replay.close()
        node.stop()
