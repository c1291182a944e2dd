"""A node whose Redis dies keeps serving HTTP and, once Redis is back, delivers what it missed."""

import time

import httpx
import pytest

from realtime.models import Stream
from tests.support.events import append_events
from tests.support.processes import ARTIFACTS, AsgiNode, ManagedProcess, free_port, wait_until
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)


class PrivateRedis(ManagedProcess):
    def __init__(self, port: int) -> None:
        self.port = port
        argv = ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(ARTIFACTS)]
        super().__init__(f"redis-{port}", argv)

    def wait_ready(self) -> "PrivateRedis":
        import redis

        wait_until(lambda: _pings(redis.Redis(port=self.port)), timeout=10, what="private redis")
        return self


def _pings(client) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


def test_node_stays_responsive_while_its_redis_is_down_and_repairs_after(stream: Stream) -> None:
    """With the hub's Redis killed, /healthz answers promptly (503); back up, missed events arrive in order."""
    port = free_port()
    server = PrivateRedis(port).start()
    server.wait_ready()
    node = AsgiNode("node-private-redis", env={"REDIS_URL": f"redis://127.0.0.1:{port}/0"}).start().wait_ready()
    client = WsClient(f"{node.ws}/ws/streams/{stream.slug}/")
    try:
        server.kill()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:  # the event loop must not be starved by the hub
            assert httpx.get(f"{node.http}/healthz", timeout=5).status_code == 503
        append_events(stream.id, 3)  # published to the test Redis, never seen by this node's hub
        server.start()
        server.wait_ready()
        assert [e["seq"] for e in client.wait_for_seq(3, timeout=30)] == [1, 2, 3]  # repaired from the log
    finally:
        client.close()
        node.stop()
        server.kill()
