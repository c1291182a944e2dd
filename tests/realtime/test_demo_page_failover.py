"""The demo page survives the death of its WebSocket node: it rediscovers a node and resumes with after=."""

from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from realtime.nodes import NodeInfo, node_choose
from tests.client.conftest import js_build  # noqa: F401  (the page loads the built package)
from tests.conftest import ApiUser, Stack
from tests.factories import StreamFactory
from tests.support.api import post_comment
from tests.support.processes import AsgiNode
from tests.test_demo_page import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def _slug_served_by(node_id: str, others: list[str]) -> str:
    """A slug that rendezvous hashing gives to ``node_id`` among these nodes."""
    nodes = [NodeInfo(n, "", 0, 1, {}, 0.0) for n in [node_id, *others]]
    chosen = ((f"page-{i}", node_choose(nodes=nodes, slug=f"page-{i}")) for i in range(1000))
    return next(slug for slug, node in chosen if node is not None and node.node_id == node_id)


def test_demo_page_reconnects_through_discovery_and_resumes_after_its_node_is_killed(
    js_build: Path,  # noqa: F811
    node_pair: list[AsgiNode],
    live: Stack,
    api_user: ApiUser,
    http: httpx.Client,
) -> None:
    """A reader whose socket node is SIGKILLed reconnects to the survivor and shows every comment once."""
    doomed, survivor = node_pair
    stream = StreamFactory.create(slug=_slug_served_by(doomed.name, [survivor.name]))

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        reader = browser.new_context().new_page()
        sockets: list[str] = []
        reader.on("websocket", lambda ws: sockets.append(ws.url))
        reader.goto(f"{survivor.http}/streams/{stream.slug}/")  # page from one node, socket from the other
        expect(reader.locator("#status")).to_have_attribute("data-state", "live")
        assert sockets[0].startswith(doomed.ws)

        assert post_comment(http, live.nodes[0].http, stream.slug, api_user.headers, "before").status_code == 202
        expect(reader.locator("#comments li")).to_have_count(1)

        doomed.kill()
        expect(reader.locator("#status")).to_have_attribute("data-state", "offline")
        assert post_comment(http, live.nodes[0].http, stream.slug, api_user.headers, "while away").status_code == 202
        expect(reader.locator("#status")).to_have_attribute("data-state", "live", timeout=20_000)
        expect(reader.locator("#comments li")).to_have_count(2, timeout=20_000)
        expect(reader.locator("#comments li .seq")).to_have_text(["#1", "#2"])
        assert sockets[-1].startswith(survivor.ws) and "after=1" in sockets[-1]
        browser.close()
