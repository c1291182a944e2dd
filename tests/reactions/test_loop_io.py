"""Taps answered on a node's event loop never wait on a store: no synchronous I/O on the loop.

A node whose broker hangs (accepts connections and requests, never answers, so every read of it
waits for its client's timeout) is tapped continuously over the HTTP fast lane and over a
WebSocket. Synchronous I/O on the loop would stop every answer while the node waits on the
broker; the test checks that taps are answered *while* the broker holds a request of the node's.
"""

import json
import threading
import time

import httpx
import pytest

from realtime.models import Stream
from tests.conftest import ApiUser
from tests.support.processes import AsgiNode, wait_until
from tests.support.proxy import BlackHole
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)

RUN_SECONDS = 4.0
# A healthy loop answers many taps during each wait of the node on the broker (a tap takes a few
# milliseconds); a blocked loop answers at most the one already on its way when the wait began.
ANSWERS_PER_WAIT = 3
MARGIN = 0.05  # an answer sent just before a wait began may still be arriving


def _answered_during(waits: list[tuple[float, float]], answers: list[float]) -> int:
    inner = [(start + MARGIN, end - MARGIN) for start, end in waits if end - start > 3 * MARGIN]
    return sum(any(start < at < end for start, end in inner) for at in answers)


@pytest.mark.parametrize("server", ["uvicorn", "daphne"])
def test_taps_are_answered_while_the_node_waits_on_a_broker_that_never_answers(
    server: str, api_user: ApiUser, stream: Stream
) -> None:
    """HTTP fast-lane taps and WebSocket taps keep being answered during every wait on a hung broker."""
    hole = BlackHole().start()
    env = {
        "CELERY_BROKER_URL": hole.redis_url,
        "CHORUS_BREAKER_FAIL_MAX": "1000000",  # the node keeps trying the broker, and keeps waiting on it
        "CHORUS_REACTION_TAPS_PER_SECOND": "1000000",
        "CHORUS_HOT_STREAM_THRESHOLD": "1000000000",
        "CHORUS_WS_INBOUND_RATE": "1000000",
        "CHORUS_WS_INBOUND_BURST": "1000000",
    }
    node = AsgiNode(f"loop-io-{server}", server=server, env=env).start()
    socket = None
    try:
        node.wait_ready()
        socket = WsClient(f"{node.ws}/ws/streams/{stream.slug}/?token={api_user.token}")
        # the first tap makes the node read the broker's queue depth (for shedding): it hangs there
        url = f"{node.http}/api/v1/streams/{stream.slug}/reactions"
        assert httpx.post(url, json={"kind": "heart"}, headers=api_user.headers, timeout=15).status_code == 202
        wait_until(lambda: hole.waits, timeout=15, what="the node to wait on the broker")
        http_answers: list[float] = []
        ws_answers: list[float] = []
        statuses: set[int] = set()
        deadline = time.monotonic() + RUN_SECONDS

        def tap_over_http() -> None:
            with httpx.Client(timeout=15) as client:
                while time.monotonic() < deadline:
                    statuses.add(client.post(url, json={"kind": "heart"}, headers=api_user.headers).status_code)
                    http_answers.append(time.monotonic())

        def tap_over_ws() -> None:
            assert socket is not None
            while time.monotonic() < deadline:
                pongs = sum(f.get("type") == "pong" for f in socket.frames)
                socket.send(json.dumps({"type": "reaction", "kind": "fire"}))
                socket.send({"type": "ping"})  # answered after the tap: frames are handled in order
                socket.wait_for(lambda f, n=pongs: sum(x.get("type") == "pong" for x in f) > n, timeout=15, what="pong")
                ws_answers.append(time.monotonic())

        threads = [threading.Thread(target=tap_over_http), threading.Thread(target=tap_over_ws)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=RUN_SECONDS + 30)

        # then: every tap was taken, and the node kept answering during each of its waits on the broker
        assert statuses == {202}, statuses
        assert not [f for f in socket.frames if f.get("type") == "error"], socket.frames[-3:]
        waits = [(start, end) for start, end in hole.waits if start >= deadline - RUN_SECONDS and end <= deadline]
        assert len(waits) >= 3, hole.waits
        assert _answered_during(waits, http_answers) >= ANSWERS_PER_WAIT * len(waits), (waits, len(http_answers))
        assert _answered_during(waits, ws_answers) >= ANSWERS_PER_WAIT * len(waits), (waits, len(ws_answers))
    finally:
        if socket is not None:
            socket.close()
        node.stop()
        hole.stop()
