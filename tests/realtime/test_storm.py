"""A connection storm: 1,000 sockets opening and closing at once cost no error and leak no state."""

import asyncio
import contextlib
from functools import partial

import httpx
import pytest
import websockets
from django.test import override_settings

from realtime.models import Stream
from realtime.nodes import node_list
from tests.support.processes import AsgiNode, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

SOCKETS = 1000


async def _open(url: str) -> websockets.ClientConnection:
    ws = await websockets.connect(url, open_timeout=60, max_size=None)
    hello = await asyncio.wait_for(ws.recv(), timeout=60)
    assert '"hello"' in hello, hello
    return ws


async def _probe(nodes, slug: str, stop: asyncio.Event, statuses: list[int]) -> None:
    """Keep asking for new connections (discovery, health, a fresh socket) while the storm lasts."""
    async with httpx.AsyncClient(timeout=30) as http:
        while not stop.is_set():
            for node in nodes:
                statuses.append(
                    (await http.get(f"{node.http}/api/v1/realtime/connect", params={"stream": slug})).status_code
                )
                statuses.append((await http.get(f"{node.http}/healthz")).status_code)
                ws = await _open(f"{node.ws}/ws/streams/{slug}/")
                await ws.close()
            await asyncio.sleep(0.05)


async def _storm(nodes, slug: str) -> list[int]:
    statuses: list[int] = []
    stop = asyncio.Event()
    prober = asyncio.create_task(_probe(nodes, slug, stop, statuses))
    urls = [f"{nodes[i % 2].ws}/ws/streams/{slug}/" for i in range(SOCKETS)]
    sockets = await asyncio.gather(*(_open(url) for url in urls))
    # Half vanish without a close handshake (a client network dying), half close politely.
    for ws in sockets[::2]:
        ws.transport.abort()
    await asyncio.gather(*(ws.close() for ws in sockets[1::2]))
    stop.set()
    with contextlib.suppress(asyncio.CancelledError):
        await prober
    return statuses


def _forgot_every_socket(node: AsgiNode) -> bool:
    metrics = node.metrics()
    return metrics["chorus_ws_connections"] == 0 and metrics["chorus_hub_subscribers"] == 0


def test_a_thousand_sockets_open_and_close_at_once_without_errors_or_leaks(
    node_pair: list[AsgiNode], stream: Stream
) -> None:
    """1,000 sockets over two nodes open and close together: no 5xx meanwhile, all counts back to zero."""
    statuses = asyncio.run(_storm(node_pair, stream.slug))

    assert statuses and all(code == 200 for code in statuses), sorted(set(statuses))
    for node in node_pair:
        wait_until(
            partial(_forgot_every_socket, node),
            timeout=30,
            what=f"{node.name} to forget every socket",
        )
        assert node.alive()
        assert "Traceback" not in node.log_text()
    names = {node.name for node in node_pair}

    def registry_empty() -> bool:
        registered = [n for n in node_list() if n.node_id in names]
        return len(registered) == 2 and all(n.connections == 0 and not n.streams for n in registered)

    pool = node_pair[0].env["CHORUS_NODE_POOL"]
    with override_settings(CHORUS_NODE_POOL=pool):
        wait_until(registry_empty, timeout=10, what="the registry to show no connections")
