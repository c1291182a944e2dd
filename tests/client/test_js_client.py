"""The JavaScript client (clients/js) in Node, against real nodes, a worker, PostgreSQL and Redis.

Each file of clients/js/test/ runs as one test here; the Node tests drive the stack through
``tests/client/control.py`` (users, streams, killing and restarting nodes, resetting a history).
"""

import os
import subprocess

import pytest

from tests.client.conftest import JS

pytestmark = pytest.mark.django_db(transaction=True)

NODE_TESTS = sorted(path.name for path in (JS / "test").glob("*.test.mjs"))


def test_bundle_is_within_its_size_budget(js_build):
    """The minified, gzipped client stays under 15 KB (the script prints the measured size)."""
    result = subprocess.run(["node", "scripts/size.mjs"], cwd=js_build, capture_output=True, text=True, timeout=120)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", NODE_TESTS)
def test_node_suite(js_build, control, name):
    """One file of the client's Node tests passes against the real stack."""
    result = subprocess.run(
        ["node", "--experimental-websocket", "--test", "--test-reporter=spec", f"test/{name}"],
        cwd=js_build,
        env={**os.environ, "CHORUS_TEST_CONTROL": control.url, "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=280,
    )
    print(result.stdout[-6000:])
    assert result.returncode == 0, f"{name} failed:\n{result.stdout[-12000:]}\n{result.stderr[-4000:]}"
