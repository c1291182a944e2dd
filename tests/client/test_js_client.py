"""The JavaScript client (clients/js) in Node, against real nodes, a worker, PostgreSQL and Redis.

Each file of clients/js/test/ runs as one test here; the Node tests drive the stack through
``tests/client/control.py`` (users, streams, killing and restarting nodes, resetting a history).
"""

import os
import re
import secrets
import subprocess
from pathlib import Path

import pytest

from tests.client.conftest import JS
from tests.client.control import Control
from tests.factories import StreamFactory, UserFactory
from tests.support.processes import ROOT, AsgiNode

pytestmark = pytest.mark.django_db(transaction=True)

NODE_TESTS = sorted(path.name for path in (JS / "test").glob("*.test.mjs"))


def test_bundle_is_within_its_size_budget(js_build: Path) -> None:
    """The minified, gzipped client stays under 15 KB (the script prints the measured size)."""
    result = subprocess.run(["node", "scripts/size.mjs"], cwd=js_build, capture_output=True, text=True, timeout=120)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", NODE_TESTS)
def test_node_suite(js_build: Path, control: Control, name) -> None:
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


def test_the_documented_example_runs_as_written(js_build: Path, control: Control, js_nodes: list[AsgiNode]) -> None:
    """docs/CLIENT.md's example, against a node set up as ``make run`` sets it up (user admin with
    a random password, stream demo): it prints the stream, posts, sees its own comment come back
    live, and exits."""
    password = secrets.token_urlsafe(18)
    UserFactory.create(username="admin", password=password)
    StreamFactory.create(slug="demo")
    doc = (ROOT / "docs" / "CLIENT.md").read_text()
    example = re.search(r"## Example\n.*?```js\n(.*?)```", doc, re.S)
    assert example is not None, "docs/CLIENT.md has an Example section with a js block"
    code = example.group(1)
    assert len(code.strip().splitlines()) <= 22
    # Inside the package, so that `import "@chorus/client"` resolves to it (a package self-reference).
    script = js_build / ".doc-example.mjs"
    script.write_text(code)
    try:
        for run in range(2):
            result = subprocess.run(
                ["node", "--experimental-websocket", script.name],
                cwd=js_build,
                env={**os.environ, "CHORUS_URL": js_nodes[run].http, "CHORUS_PASSWORD": password},
                capture_output=True,
                text=True,
                timeout=60,
            )
            print(result.stdout)
            assert result.returncode == 0, result.stdout + result.stderr
            assert result.stderr == ""
            lines = result.stdout.splitlines()
            assert lines[-1] == "[closed]"
            assert re.fullmatch(rf"#{run + 1} admin: hello from process \d+  \(live\)", lines[-2])
            if run == 1:  # the first run's comment comes from the tail read, before the socket is live
                assert re.fullmatch(r"#1 admin: hello from process \d+", lines[0]), lines
    finally:
        script.unlink(missing_ok=True)
