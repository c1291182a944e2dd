"""Two ASGI nodes with small, known limits, shared by the gateway's HTTP and WebSocket tests."""

import json
from collections.abc import Iterator

import pytest

from tests.support.processes import AsgiNode

CAPACITY, RATE = 20, 10.0
WS_CAPACITY, WS_RATE = 5, 1.0
TUNED = {
    "CHORUS_RATE_LIMITS": json.dumps(
        {"regular": {"comments": [CAPACITY, RATE], "ws_messages": [WS_CAPACITY, WS_RATE]}}
    ),
    # The hammering clients must stay "regular" here: tiers are tested on their own.
    "CHORUS_TIER_HOT_ABOVE": "1000000",
}


@pytest.fixture(scope="package")
def tuned_nodes(django_db_setup: None) -> Iterator[list[AsgiNode]]:
    nodes = [AsgiNode(f"gw-tuned-{i}", env=TUNED).start() for i in range(2)]
    try:
        for node in nodes:
            node.wait_ready()
        yield nodes
    finally:
        for node in nodes:
            node.stop()
