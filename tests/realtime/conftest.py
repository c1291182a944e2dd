"""Fixtures for real-time tests that need nodes of their own (killed, stormed, or configured apart)."""

import uuid
from collections.abc import Iterator

import pytest

from tests.support.processes import AsgiNode


@pytest.fixture
def node_pair(django_db_setup: None) -> Iterator[list[AsgiNode]]:
    """Two fresh daphne nodes in a pool of their own, with a short heartbeat TTL."""
    pool = f"pool-{uuid.uuid4().hex[:8]}"
    env = {"CHORUS_NODE_POOL": pool, "CHORUS_NODE_TTL_SECONDS": "2", "CHORUS_NODE_HEARTBEAT_SECONDS": "0.5"}
    nodes = [AsgiNode("node-pa", env=env).start(), AsgiNode("node-pb", env=env).start()]
    try:
        yield [node.wait_ready() for node in nodes]
    finally:
        for node in nodes:
            node.stop()
