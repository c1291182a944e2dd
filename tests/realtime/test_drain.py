"""Graceful drain on a real SIGTERM, under uvicorn and daphne, with real sockets and a real request in flight."""

import asyncio
import json
import os
import signal
import threading
import time
import uuid

import httpx
import psycopg
import pytest
import websockets
from django.conf import settings
from django.db import connection

from comments.models import Comment
from realtime import protocol
from realtime.models import Stream
from realtime.nodes import node_list
from tests.conftest import ApiUser, Stack
from tests.support.api import post_comment, wait_published
from tests.support.events import append_events
from tests.support.processes import ServedNode, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

SOCKETS = 30
DRAIN_SECONDS = 3.0


async def _read(ws: websockets.ClientConnection) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout=10))


async def _hold(url: str, log: dict) -> None:
    """One client: read until the server closes; record its events, its drain frame, its close and when."""
    async with websockets.connect(url, open_timeout=10) as ws:
        log["hello"] = await _read(ws)
        log["opened"] = True
        try:
            while True:
                frame = json.loads(await ws.recv())
                log.setdefault("frames", []).append(frame)
        except websockets.ConnectionClosed as exc:
            log["close"] = (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else None
            log["closed_at"] = time.monotonic()


def _lock_row(comment_id: uuid.UUID, locked: threading.Event, release: threading.Event) -> None:
    """Hold the comment's row lock in a connection of our own until ``release``: an edit waits on it."""
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=False) as conn:
        conn.execute(f"SELECT 1 FROM {Comment._meta.db_table} WHERE id = %s FOR UPDATE", [comment_id])
        locked.set()
        release.wait(60)
        conn.rollback()


def _lock_waiters() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE NOT l.granted AND a.datname = current_database()"
        )
        return cursor.fetchone()[0]


@pytest.mark.parametrize("server", ["uvicorn", "daphne"])
def test_sigterm_hands_sockets_over_finishes_requests_and_exits(
    server, live: Stack, stream: Stream, api_user: ApiUser, http: httpx.Client
) -> None:
    """SIGTERM: readiness 503 and out of discovery at once, liveness 200 until exit; new sockets refused
    with a draining frame and 4503; each socket gets a draining frame with the last seq it was sent, then
    4503 "node draining", at moments spread over CHORUS_DRAIN_SECONDS; a request waiting in the
    application still gets its answer; the process exits on its own, well before the deadline."""
    # given: a published comment to edit, a node with sockets that have had events
    response = post_comment(http, live.nodes[0].http, stream.slug, api_user.headers, "before")
    comment_id = response.json()["id"]
    wait_published([comment_id])
    node = ServedNode(f"drain-{server}", server=server, env={"CHORUS_DRAIN_SECONDS": str(DRAIN_SECONDS)})
    node.start().wait_ready()
    wait_until(lambda: node.name in {n.node_id for n in node_list()}, timeout=10, what="registration")
    assert httpx.get(f"{node.http}/readyz").json() == {"status": "ready"}
    url = f"{node.ws}/ws/streams/{stream.slug}/?after=0"
    logs: list[dict] = [{} for _ in range(SOCKETS)]
    release = threading.Event()

    async def scenario() -> float:
        holders = [asyncio.create_task(_hold(url, log)) for log in logs]
        await asyncio.to_thread(wait_until, lambda: all(log.get("opened") for log in logs), timeout=30, what="sockets")
        await asyncio.to_thread(append_events, stream.id, 5)

        # an edit waits in the application on the row lock
        locked = threading.Event()
        threading.Thread(target=_lock_row, args=(uuid.UUID(comment_id), locked, release), daemon=True).start()
        assert await asyncio.to_thread(locked.wait, 10)
        version = http.get(f"{node.http}/api/v1/comments/{comment_id}").headers["ETag"]
        edit = asyncio.create_task(
            asyncio.to_thread(
                httpx.patch,
                f"{node.http}/api/v1/comments/{comment_id}",
                json={"body": "edited while draining"},
                headers={**api_user.headers, "If-Match": version},
                timeout=60,
            )
        )
        await asyncio.to_thread(wait_until, lambda: _lock_waiters() > 0, timeout=10, what="the edit to wait")
        await asyncio.to_thread(wait_until, lambda: all(
            sum(1 for f in log.get("frames", []) if f["type"] == "event") >= 5 for log in logs
        ), timeout=10, what="the first events")  # fmt: skip

        # when: SIGTERM
        sigterm_at = time.monotonic()
        os.kill(node.pid(), signal.SIGTERM)
        # then: out of the balancer and of discovery at once, alive all along
        await asyncio.to_thread(
            wait_until, lambda: httpx.get(f"{node.http}/readyz").status_code == 503, timeout=2, what="readiness"
        )
        assert httpx.get(f"{node.http}/livez").status_code == 200
        assert node.name not in {n.node_id for n in node_list()}
        # a new socket is refused: a draining frame, then 4503
        async with websockets.connect(url, open_timeout=10) as refused:
            assert await _read(refused) == {"type": "draining"}
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await _read(refused)
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (protocol.CLOSE_DRAINING, "node draining")
        # sockets still connected keep getting events while they wait for their turn
        await asyncio.to_thread(append_events, stream.id, 3)
        await asyncio.wait_for(asyncio.gather(*holders), timeout=DRAIN_SECONDS + 5)

        # every socket was drained; the request in flight is still waited for, the node alive
        assert not edit.done() and node.alive()
        assert httpx.get(f"{node.http}/livez", timeout=2).json()["draining"] is True
        release.set()
        edited = await edit
        assert edited.status_code == 200 and edited.json()["body"] == "edited while draining"
        return sigterm_at

    try:
        sigterm_at = asyncio.run(scenario())
        wait_until(lambda: not node.alive(), timeout=10, what="the node to exit")
        exited_after = time.monotonic() - sigterm_at
    finally:
        release.set()
        node.stop()

    closes = []
    for log in logs:
        events = [f["seq"] for f in log["frames"] if f["type"] == "event"]
        assert events == list(range(1, len(events) + 1))  # in order, no duplicate
        assert log["frames"][-1] == {"type": "draining", "last_seq": events[-1], "epoch": 1}, log["frames"][-3:]
        assert log["close"] == (protocol.CLOSE_DRAINING, "node draining")
        assert not [f for f in log["frames"] if f["type"] == "error"]
        closes.append(log["closed_at"])
    # spread over the window, not all at once
    assert max(closes) - min(closes) > DRAIN_SECONDS / 3
    assert max(closes) - sigterm_at < DRAIN_SECONDS + 2
    assert exited_after < DRAIN_SECONDS + 10
    assert "drained in" in node.run_log()
    assert settings.CHORUS_DRAIN_SECONDS  # the setting exists for every process


@pytest.mark.parametrize("server", ["uvicorn", "daphne"])
def test_probes_answer_without_django(server, transactional_db: None) -> None:
    """/readyz and /livez answer any Host (an orchestrator's probe), GET or HEAD, before the first request."""
    node = ServedNode(f"probes-{server}", server=server).start()
    try:
        node.wait_ready()
        for path, body in [("/readyz", {"status": "ready"}), ("/livez", {"status": "alive", "draining": False})]:
            answer = httpx.get(f"{node.http}{path}", headers={"Host": "10.1.2.3:8000"})
            assert answer.status_code == 200 and answer.json() == body
            assert answer.headers["cache-control"] == "no-store"
            assert httpx.head(f"{node.http}{path}").status_code == 200
    finally:
        node.stop()
