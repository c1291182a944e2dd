"""A socket whose connect fails, or whose client leaves mid-connect, leaves nothing behind in the node.

Channels runs ``disconnect()`` only on a clean close: when ``connect()`` raised (Redis or the
database failing, or a send to a client that has gone, which uvicorn raises as
``ClientDisconnected``) the socket's connection count, hub subscription and presence stayed, and
``/metrics`` and discovery counted a viewer that was not there.
"""

import socket

import httpx
import pytest

from realtime import protocol
from realtime.models import Stream
from tests.support.locks import lock_waiters, table_locked
from tests.support.processes import AsgiNode, wait_until
from tests.support.rawws import RawWs
from tests.support.stores import RedisServer
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)


def _forgotten(node: AsgiNode) -> bool:
    try:
        metrics = node.metrics()
        return metrics["chorus_ws_connections"] == 0 and metrics["chorus_hub_subscribers"] == 0
    except (httpx.HTTPError, KeyError, ValueError):
        return False  # not answering yet (Redis reconnecting)


@pytest.mark.parametrize("server", ["uvicorn", "daphne"])
def test_a_connect_that_fails_on_redis_is_refused_and_counted_out(stream: Stream, server) -> None:
    """Redis down while a socket joins its stream: error frame and 4503, and no phantom viewer once Redis is back."""
    redis_server = RedisServer(f"redis-release-{server}").start().wait_ready()
    node = AsgiNode(f"node-release-{server}", server=server, env={"REDIS_URL": redis_server.url}).start()
    try:
        node.wait_ready()
        redis_server.kill()

        # when a socket connects while the hub cannot subscribe to its stream
        client = WsClient(f"{node.ws}/ws/streams/{stream.slug}/")
        close_code = client.wait_closed(timeout=15)

        # then, once Redis is back (/metrics reads the registry there), the node counts nothing
        redis_server.restart()
        wait_until(lambda: _forgotten(node), timeout=15, what="the node to forget the failed socket")
        assert close_code == protocol.CLOSE_UNAVAILABLE
        assert [f["code"] for f in client.frames if f["type"] == "error"] == ["unavailable"]
        client.close()
    finally:
        node.stop()
        redis_server.kill()


def _loop_has_turned(port: int) -> bool:
    """A malformed request uvicorn answers itself: its event loop has handled every earlier socket event."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as probe:
        probe.sendall(b"NONSENSE\r\n\r\n")
        return probe.recv(64).startswith(b"HTTP/1.1 400")


def test_a_client_that_leaves_during_connect_leaves_no_phantom_viewer(stream: Stream) -> None:
    """uvicorn raises ClientDisconnected on the hello to a client gone mid-connect; the socket is still released."""
    node = AsgiNode("node-release-gone", server="uvicorn").start().wait_ready()
    try:
        with table_locked("realtime_stream"):
            # given a socket accepted and waiting, inside connect, for the database to find its stream
            raw = RawWs(node.port, f"/ws/streams/{stream.slug}/")
            wait_until(lambda: lock_waiters() >= 1, timeout=15, what="the node to wait for the stream lookup")
            # when its client goes away, and the node has seen it go
            raw.close()
            assert _loop_has_turned(node.port)
        # then connect goes on, its hello fails, and the node forgets the socket all the same
        wait_until(lambda: _forgotten(node), timeout=15, what="the node to forget the departed socket")
        assert node.alive()
    finally:
        node.stop()
