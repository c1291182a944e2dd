"""Discovery on real nodes: the node registry, GET /api/v1/realtime/connect, manage.py realtime_nodes."""

import io

import httpx
import pytest
from django.core.management import call_command
from django.test import Client, override_settings

from realtime.models import Stream
from realtime.nodes import NodeInfo, node_choose, node_list
from tests.conftest import Stack
from tests.support.processes import AsgiNode, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def _node(node_id: str, connections: int, limit: int = 100) -> NodeInfo:
    return NodeInfo(node_id, f"ws://{node_id}", connections, limit, {}, 0.0)


def _choose(nodes: list[NodeInfo], slug: str) -> NodeInfo:
    chosen = node_choose(nodes=nodes, slug=slug)
    assert chosen is not None
    return chosen


def test_connect_returns_a_live_node_and_is_sticky_per_stream(live: Stack, stream: Stream, http: httpx.Client) -> None:
    """Every node answers with the same live node for a stream, and its URL is that stream's socket."""
    wait_until(lambda: {"node-a", "node-b"} <= {n.node_id for n in node_list()}, timeout=10, what="registration")
    answers = {http.get(f"{n.http}/api/v1/realtime/connect", params={"stream": stream.slug}).json()["url"]
               for n in live.nodes for _ in range(3)}  # fmt: skip
    assert len(answers) == 1
    (url,) = answers
    assert url in {f"{n.ws}/ws/streams/{stream.slug}/" for n in live.nodes}


def test_connect_rejects_missing_and_unknown_streams(live: Stack, http: httpx.Client) -> None:
    """No stream parameter is a 400 naming it; an unknown stream is a 404; never a 500."""
    base = live.nodes[0].http
    missing = http.get(f"{base}/api/v1/realtime/connect")
    assert missing.status_code == 400 and "stream" in missing.json()["fields"]
    bad = http.get(f"{base}/api/v1/realtime/connect", params={"stream": "not a slug!"})
    assert bad.status_code == 400 and "stream" in bad.json()["fields"]
    unknown = http.get(f"{base}/api/v1/realtime/connect", params={"stream": "no-such-stream"})
    assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"


def test_connect_is_503_with_retry_after_when_no_node_is_alive(client: Client, stream: Stream) -> None:
    """With no live node in the pool discovery answers 503 and Retry-After."""
    with override_settings(CHORUS_NODE_POOL="empty-pool"):
        response = client.get("/api/v1/realtime/connect", {"stream": stream.slug})
    assert response.status_code == 503
    assert response["Retry-After"] == "2" and response.json()["code"] == "no_live_node"


def test_connect_hands_out_the_balancer_when_one_is_configured(client: Client, stream: Stream) -> None:
    """With CHORUS_PUBLIC_WS_URL the URL goes through the balancer (which picks the node), even with no
    node registered; an unknown stream is still a 404."""
    with override_settings(CHORUS_PUBLIC_WS_URL="wss://chorus.example.com/", CHORUS_NODE_POOL="empty-pool"):
        response = client.get("/api/v1/realtime/connect", {"stream": stream.slug})
        unknown = client.get("/api/v1/realtime/connect", {"stream": "no-such-stream"})
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    assert response.json() == {"url": f"wss://chorus.example.com/ws/streams/{stream.slug}/", "node": None}
    assert unknown.status_code == 404


def test_choice_falls_back_to_the_least_loaded_node_when_the_first_is_full() -> None:
    """Rendezvous picks the same node for a stream; a node over its limit gives way to the least loaded."""
    nodes = [_node("a", 10), _node("b", 20), _node("c", 30)]
    first = _choose(nodes, "news")
    assert all(_choose(list(reversed(nodes)), "news") == first for _ in range(3))
    spread = {_choose(nodes, f"s{i}").node_id for i in range(50)}
    assert spread == {"a", "b", "c"}
    full = [_node(n.node_id, 100 if n == first else n.connections) for n in nodes]
    assert (
        _choose(full, "news").node_id
        == min((n for n in full if n.node_id != first.node_id), key=lambda n: n.connections).node_id
    )


def test_realtime_nodes_command_lists_nodes_connections_and_age(live: Stack) -> None:
    """manage.py realtime_nodes shows each live node with its URL, connections and heartbeat age."""
    wait_until(lambda: len(node_list()) >= 2, timeout=10, what="registration")
    out = io.StringIO()
    call_command("realtime_nodes", stdout=out)
    text = out.getvalue()
    for node in live.nodes:
        assert node.name in text and node.ws in text
    assert "node(s)" in text


@pytest.mark.parametrize("server", ["daphne", "uvicorn"])
def test_a_node_that_shuts_down_cleanly_leaves_the_registry_at_once(server, transactional_db: None) -> None:
    """SIGTERM: the node's entry is gone when the process has exited, not a TTL later."""
    node = AsgiNode(f"leaving-{server}", server=server).start().wait_ready()  # /healthz starts the heartbeat
    try:
        wait_until(lambda: node.name in {n.node_id for n in node_list()}, timeout=10, what="the node to register")
    finally:
        node.stop()
    assert node.name not in {n.node_id for n in node_list()}
    assert "left the registry" in node.log_text()
