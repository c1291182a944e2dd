"""The node's one start and one stop, under each server, and daphne's patches only under daphne.

Each server's own startup path runs in a process of its own (uvicorn's lifespan implementation,
daphne's reactor), without listening on a port: what is checked is what that path starts, stops
and patches.
"""

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

from realtime.node import Node
from realtime.nodes import node_list
from tests.support.processes import ROOT

# What would be patched under daphne, and the node's background tasks.
_LOOK = """
import asyncio
import threading

import autobahn.util
from daphne.http_protocol import WebRequest
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet import tcp

from realtime.node import node

BACKGROUND = {"stream-hub-topology", "stream-hub-tail-check", "node-heartbeat", "reaction-counts-emitter"}


def patches():
    return {
        "twisted_write_through": getattr(tcp.Connection.write, "chorus_write_through", False),
        "close_reason": getattr(WebSocketProtocol.handle_reply, "chorus_close_reason", False),
        "request_limits": getattr(WebRequest, "chorus_limited", False),
        "autobahn_plain_logs": autobahn.util._HAS_CLICK is False,
    }


def background():
    tasks = [t.get_name() for t in asyncio.all_tasks() if t.get_name() in BACKGROUND and not t.done()]
    threads = [t.name for t in threading.enumerate() if t.name == "chorus-shedding-signals"]
    return sorted(tasks + threads)
"""

UVICORN = (
    _LOOK
    + """
import json
from uvicorn.config import Config
from uvicorn.lifespan.on import LifespanOn

config = Config("project.asgi:application", lifespan="on")
config.load()  # imports the application as uvicorn's command line does


async def main():
    lifespan = LifespanOn(config)
    report = {"before_startup": node.started, "running_before": background()}
    await lifespan.startup()
    report.update(started=node.started, failed=lifespan.startup_failed, running=background())
    await lifespan.shutdown()
    await asyncio.sleep(0)
    for thread in threading.enumerate():
        if thread.name == "chorus-shedding-signals":
            thread.join(timeout=2)  # it ends at its next refresh
    report.update(stopped=node.stopped, left=background(), patches=patches())
    print(json.dumps(report))


asyncio.run(main())
"""
)

DAPHNE = (
    _LOOK
    + """
import importlib
import json
from twisted.internet import reactor

importlib.import_module("project.asgi")  # as daphne's command line loads the application
report = {"patches": patches(), "before_reactor": node.started}


def look():
    report.update(started=node.started, running=background())
    reactor.stop()


reactor.callLater(0.5, look)
reactor.run(installSignalHandlers=False)
report.update(stopped=node.stopped)
print(json.dumps(report))
"""
)


def _run(script: str, *, first: str = "") -> dict[str, Any]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", "CHORUS_NODE_WS_URL": ""}
    code = f"{first}\nimport django\ndjango.setup(set_prefix=False)\n{script}"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


BACKGROUND = [
    "chorus-shedding-signals",
    "node-heartbeat",
    "reaction-counts-emitter",
    "stream-hub-tail-check",
    "stream-hub-topology",
]


def test_under_uvicorn_the_lifespan_starts_and_stops_the_node_and_daphne_is_left_alone():
    """uvicorn: lifespan startup starts every background task, shutdown stops them; nothing of daphne is patched."""
    report = _run(UVICORN)
    assert report["before_startup"] is False and report["running_before"] == []  # importing it starts nothing
    assert report["started"] is True and report["failed"] is False
    assert report["running"] == BACKGROUND
    assert report["stopped"] is True and report["left"] == []
    assert report["patches"] == dict.fromkeys(report["patches"], False)


def test_under_daphne_its_reactor_starts_and_stops_the_node_and_it_is_tuned():
    """daphne, whose command line loaded the application: tuned, started as the reactor runs, stopped before it ends."""
    report = _run(DAPHNE, first="import daphne.cli  # what daphne's command line has imported")
    assert report["patches"] == dict.fromkeys(report["patches"], True)
    assert report["before_reactor"] is False
    assert report["started"] is True and report["running"] == BACKGROUND
    assert report["stopped"] is True


def test_a_server_without_lifespan_starts_the_node_with_its_first_connection():
    """No lifespan and no reactor: the first request starts the node (and tells it its address); stop undoes it."""
    node = Node()
    answered: list[dict[str, Any]] = []

    async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise AssertionError("the probe is answered before the application")

    async def send(message: dict[str, Any]) -> None:
        answered.append(message)

    async def scenario() -> None:
        app = node.asgi(application)
        scope = {"type": "http", "path": "/readyz", "method": "GET", "server": ("127.0.0.1", 9)}
        await app(scope, None, send)
        assert node.started and node.heartbeat.url == "ws://127.0.0.1:9"
        assert answered[0]["status"] == 200
        names = {task.get_name() for task in asyncio.all_tasks()}
        assert {"node-heartbeat", "stream-hub-topology", "stream-hub-tail-check"} <= names
        await asyncio.sleep(0.1)  # the first heartbeat registers the node
        await node.stop()
        assert node.stopped
        assert all(task.done() for task in asyncio.all_tasks() if task is not asyncio.current_task())

    asyncio.run(scenario())
    assert node.heartbeat.node_id not in {info.node_id for info in node_list()}
