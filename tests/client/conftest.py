"""Fixtures for the JavaScript client's tests: its build, two nodes of its own, the control API."""

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client.control import Control
from tests.conftest import Stack
from tests.support.processes import ROOT, AsgiNode

JS = ROOT / "clients" / "js"
BUNDLE = JS / "dist" / "chorus-client.min.js"


def _build_is_fresh() -> bool:
    built = JS / "dist" / "esm" / "index.js"
    if not built.exists() or not BUNDLE.exists():
        return False
    sources = [*JS.glob("src/*.ts"), JS / "package-lock.json", JS / "scripts" / "build.mjs"]
    return all(source.stat().st_mtime <= built.stat().st_mtime for source in sources)


@pytest.fixture(scope="session")
def js_build() -> Path:
    """clients/js built (``make test`` builds it first; a bare pytest run builds it here)."""
    if not _build_is_fresh():
        result = subprocess.run([str(ROOT / "scripts" / "js.sh")], capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
    return JS


@pytest.fixture(scope="module")
def js_nodes(django_db_setup: None) -> Iterator[list[AsgiNode]]:
    """One daphne and one uvicorn node in a discovery pool of their own, with a short heartbeat
    TTL (a killed node leaves discovery within 2 s) and a 1 s drain; the tests kill, drain, freeze and restart them."""
    pool = f"pool-js-{uuid.uuid4().hex[:8]}"
    env = {
        "CHORUS_NODE_POOL": pool,
        "CHORUS_NODE_TTL_SECONDS": "2",
        "CHORUS_NODE_HEARTBEAT_SECONDS": "0.5",
        "CHORUS_DRAIN_SECONDS": "1",
    }
    nodes = [AsgiNode("node-js-a", env=env).start(), AsgiNode("node-js-b", server="uvicorn", env=env).start()]
    try:
        yield [node.wait_ready() for node in nodes]
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture
def control(js_nodes: list[AsgiNode], live: Stack) -> Iterator[Control]:
    """The control API over the client's nodes (all running, none frozen) and a clean database."""
    for node in js_nodes:
        if node.alive():
            node.resume()
        else:
            node.start()
        node.wait_ready()
    control = Control(js_nodes).start()
    try:
        yield control
    finally:
        control.stop()
