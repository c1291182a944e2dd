"""The Python client (realtime.client) against real nodes: holes and gaps are reported, not hidden
by reconnecting; joining at the tail; the outbox across a node restart; credit; close codes."""

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from realtime.client import ChorusClient, ChorusError, Gap, StreamGap, Subscription
from realtime.models import Stream, StreamEvent
from tests.conftest import ApiUser, Stack
from tests.factories import StreamFactory, UserFactory
from tests.support.processes import ROOT, AsgiNode, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def _post(node: AsgiNode, slug: str, headers: dict[str, str], n: int) -> None:
    with httpx.Client(timeout=10) as http:
        for i in range(n):
            response = http.post(f"{node.http}/api/v1/streams/{slug}/comments", json={"body": f"c{i}"}, headers=headers)
            assert response.status_code == 202, response.text


def _published(stream, n: int) -> None:
    wait_until(lambda: StreamEvent.objects.filter(stream=stream).count() >= n, timeout=30, what=f"{n} events")


def test_a_hole_the_server_cannot_fill_is_a_gap_raised_not_a_silent_reconnect(
    live: Stack, stream: Stream, api_user: ApiUser
) -> None:
    """Event 3 is missing from the log: the client asks for it (resync), reconnects once, then
    raises StreamGap instead of reconnecting for ever; it applied 1 and 2, nothing after."""
    node = live.nodes[0]
    _post(node, stream.slug, api_user.headers, 5)
    _published(stream, 5)
    StreamEvent.objects.filter(stream=stream, seq=3).delete()

    async def scenario() -> tuple[list[int], BaseException | None, dict]:
        async with ChorusClient(node.http, backoff=(0.05, 0.2), resync_timeout=1) as client:
            sub = client.subscribe(stream.slug, after=0)
            seqs: list[int] = []
            sub.on("event", lambda frame: seqs.append(frame["seq"]))
            with pytest.raises(StreamGap) as raised:
                await asyncio.wait_for(sub.wait_closed(), timeout=30)
            return seqs, raised.value, sub.stats

    seqs, error, stats = asyncio.run(scenario())
    assert seqs == [1, 2]
    assert isinstance(error, StreamGap) and error.gap == Gap(
        from_={"epoch": 1, "seq": 2}, to={"epoch": 1, "seq": 3}, reason="missing"
    )
    assert stats["holes"] and stats["holes"][0] == (3, 4)  # expected 3, got 4
    assert stats["resyncs"] >= 1 and stats["connections"] == 2


def test_with_a_gap_handler_the_subscription_reports_it_and_goes_on(
    live: Stack, stream: Stream, api_user: ApiUser
) -> None:
    """The application takes gaps: it is told once, and every event after the hole follows."""
    node = live.nodes[0]
    _post(node, stream.slug, api_user.headers, 5)
    _published(stream, 5)
    StreamEvent.objects.filter(stream=stream, seq=3).delete()

    async def scenario() -> tuple[list[int], list[Gap]]:
        async with ChorusClient(node.http, backoff=(0.05, 0.2), resync_timeout=1) as client:
            sub = client.subscribe(stream.slug, after=0)
            seqs: list[int] = []
            gaps: list[Gap] = []
            sub.on("event", lambda frame: seqs.append(frame["seq"]))
            sub.on("gap", gaps.append)
            deadline = asyncio.get_running_loop().time() + 30
            while len(seqs) < 4:
                assert asyncio.get_running_loop().time() < deadline, seqs
                await asyncio.sleep(0.05)
            return seqs, gaps

    seqs, gaps = asyncio.run(scenario())
    assert seqs == [1, 2, 4, 5]
    assert gaps == [Gap(from_={"epoch": 1, "seq": 2}, to={"epoch": 1, "seq": 3}, reason="missing")]


def test_joining_at_the_tail_then_live_comments_once(live: Stack, stream: Stream, api_user: ApiUser) -> None:
    """Without ``after``: the latest comments from the tail read, then live ones, none twice."""
    node_a, node_b = live.nodes
    _post(node_a, stream.slug, api_user.headers, 4)
    _published(stream, 4)

    async def scenario() -> list[tuple[str, int, bool]]:
        async with ChorusClient(node_b.http) as client:
            sub = client.subscribe(stream.slug, tail=2)
            seen: list[tuple[str, int, bool]] = []
            sub.on("comment", lambda comment, meta: seen.append((comment["body"], meta["seq"], meta["tail"])))
            await sub.wait_live(timeout=15)
            await asyncio.to_thread(_post, node_a, stream.slug, api_user.headers, 1)
            while len(seen) < 3:
                await asyncio.sleep(0.05)
            assert sub.position == {"epoch": 1, "seq": 5}
            return seen

    assert asyncio.run(scenario()) == [("c2", 3, True), ("c3", 4, True), ("c0", 5, False)]


def test_an_unknown_stream_closes_for_good_with_its_code(live: Stack) -> None:
    async def scenario() -> ChorusError:
        async with ChorusClient(live.nodes[0].http) as client:
            sub = client.subscribe("no-such-stream", after=0)
            with pytest.raises(ChorusError) as raised:
                await asyncio.wait_for(sub.wait_closed(), timeout=15)
            assert sub.state == "closed"
            return raised.value

    error = asyncio.run(scenario())
    assert error.close_code == 4404 or error.status == 404


def test_credit_holds_events_back_until_the_application_consumed_them(
    live: Stack, stream: Stream, api_user: ApiUser
) -> None:
    """With credit 2 and a handler that waits, the server sends 2 events; each one consumed lets
    one more through, in order."""
    node = live.nodes[0]
    _post(node, stream.slug, api_user.headers, 6)
    _published(stream, 6)

    async def scenario() -> list[int]:
        gate = asyncio.Event()
        seen: list[int] = []

        async def slow(frame: dict) -> None:
            seen.append(frame["seq"])
            await gate.wait()
            gate.clear()

        async with ChorusClient(node.http) as client:
            sub = client.subscribe(stream.slug, after=0, credit=2)
            sub.on("event", slow)
            await sub.wait_live(timeout=15)
            await asyncio.sleep(0.5)  # room for the server to overrun the credit, if it would
            assert seen == [1] and sub.stats["received"] == 2
            for expected in range(2, 7):
                gate.set()
                while len(seen) < expected:
                    await asyncio.sleep(0.01)
            gate.set()
            return seen

    assert asyncio.run(scenario()) == [1, 2, 3, 4, 5, 6]


def test_the_outbox_keeps_a_post_across_a_node_restart_and_posts_it_once(
    stream: Stream, api_user: ApiUser, tmp_path: Path, live: Stack
) -> None:
    """The node is down when the post is made: it waits in the outbox file; a new client on the
    same file (a restarted process) sends it with the same key once the node is back; once only."""
    node = AsgiNode("node-py-outbox").start().wait_ready()
    outbox = tmp_path / "outbox.json"
    try:
        node.stop()

        async def offline_post() -> None:
            async with ChorusClient(node.http, token=api_user.token, outbox=outbox, backoff=(0.05, 0.2)) as client:
                sent = asyncio.ensure_future(client.post_comment(stream.slug, "kept"))
                while not client.pending():
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.5)  # a few attempts fail
                assert not sent.done()
            async with ChorusClient(node.http, outbox=outbox, resume_outbox=False) as reader:
                assert [entry["payload"]["body"] for entry in reader.pending()] == ["kept"]

        asyncio.run(offline_post())
        node.start().wait_ready()

        async def resumed() -> list[dict]:
            posted: list[tuple[dict, dict]] = []
            async with ChorusClient(node.http, token=api_user.token, outbox=outbox) as client:
                client.on("posted", lambda entry, accepted: posted.append((entry, accepted)))
                while not posted:
                    await asyncio.sleep(0.05)
                assert client.pending() == []
                # the same post sent again (as if its answer had been lost): same key, same comment
                entry, accepted = posted[0]
                again = await client.post_comment(stream.slug, "kept", key=entry["key"])
                assert again["id"] == accepted["id"]
            return [accepted for _, accepted in posted]

        posted = asyncio.run(resumed())
        assert len({accepted["id"] for accepted in posted}) == 1
        wait_until(lambda: stream.comments.filter(status="published").count() == 1, timeout=20, what="publication")
        assert stream.comments.count() == 1
    finally:
        node.stop()


def test_a_history_reset_is_reported_as_a_gap_then_the_new_tail(live: Stack, stream: Stream, api_user: ApiUser) -> None:
    """A client resuming after 10, with no epoch, on a stream whose log now ends at 6 (its history
    was reset without an epoch bump): the server refuses (4400), the client finds the head behind
    it, reports gap 10 -> 6 and continues from the new tail, then live. (With epochs:
    tests/realtime/test_epochs.py.)"""
    node = live.nodes[0]
    _post(node, stream.slug, api_user.headers, 6)
    _published(stream, 6)

    async def scenario() -> tuple[list[Gap], list[tuple[int, bool]]]:
        async with ChorusClient(node.http, backoff=(0.05, 0.2)) as client:
            sub = client.subscribe(stream.slug, after=10, tail=2)
            gaps: list[Gap] = []
            seen: list[tuple[int, bool]] = []
            sub.on("gap", gaps.append)
            sub.on("comment", lambda comment, meta: seen.append((meta["seq"], meta["tail"])))
            await sub.wait_live(timeout=15)
            await asyncio.to_thread(_post, node, stream.slug, api_user.headers, 1)
            while len(seen) < 3:
                await asyncio.sleep(0.05)
            return gaps, seen

    gaps, seen = asyncio.run(scenario())
    assert gaps == [Gap(from_={"seq": 10}, to={"epoch": 1, "seq": 6}, reason="reset")]
    assert seen == [(5, True), (6, True), (7, False)]


def test_the_watchdog_leaves_a_frozen_node_for_a_live_one(live: Stack, stream: Stream, api_user: ApiUser) -> None:
    """The node under the socket is frozen (SIGSTOP): no frame, not even a pong, within the
    watchdog; the client reconnects through discovery and gets what was posted meanwhile."""
    frozen = AsgiNode("node-py-frozen", env={"CHORUS_NODE_POOL": "pool-py-frozen"}).start().wait_ready()
    try:

        async def scenario() -> Subscription:
            async with ChorusClient(
                live.nodes[0].http, backoff=(0.05, 0.2), ping_interval=0.5, watchdog=1.5, timeout=2
            ) as client:
                sub = client.subscribe(stream.slug, after=0, first_url=f"{frozen.ws}/ws/streams/{stream.slug}/")
                await sub.wait_live(timeout=15)
                frozen.pause()
                await asyncio.to_thread(_post, live.nodes[0], stream.slug, api_user.headers, 1)
                while sub.position["seq"] < 1:
                    await asyncio.sleep(0.05)
                return sub

        sub = asyncio.run(scenario())
        assert sub.stats["connections"] == 2
        assert sub.urls[0].startswith(frozen.ws) and not sub.urls[-1].startswith(frozen.ws)
    finally:
        frozen.resume()
        frozen.stop()


def test_the_documented_python_example_runs_as_written(live: Stack, tmp_path: Path) -> None:
    """docs/CLIENT.md's Python example against a node set up as ``make run`` sets it up (user
    admin, stream demo): it prints the tail, posts, sees its own comment come back live, exits."""
    UserFactory.create(username="admin", password="the-printed-password")
    StreamFactory.create(slug="demo")
    doc = (ROOT / "docs" / "CLIENT.md").read_text()
    example = re.search(r"## Python: `realtime.client`\n.*?```python\n(.*?)```", doc, re.S)
    assert example is not None, "docs/CLIENT.md has a Python section with a python block"
    script = tmp_path / "example.py"
    script.write_text(example.group(1))
    for run in range(2):
        env = {
            **os.environ,
            "CHORUS_URL": live.nodes[run].http,
            "CHORUS_PASSWORD": "the-printed-password",
            "PYTHONPATH": str(ROOT),
        }
        result = subprocess.run(
            [sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        assert re.fullmatch(rf"#{run + 1} admin: hello from process \d+  \(live\)", lines[-1]), lines
        if run == 1:  # the first run's comment comes from the tail read
            assert re.fullmatch(r"#1 admin: hello from process \d+", lines[0]), lines


def test_a_refused_token_is_renewed_once_and_a_4xx_refuses_the_post_for_good(
    live: Stack, stream: Stream, api_user: ApiUser
) -> None:
    """A 401 asks ``get_token`` again and repeats the request; a 400 leaves the outbox and raises
    the API's JSON error, naming the field."""
    node = live.nodes[0]
    tokens = iter(["not-a-token", api_user.token])

    async def scenario() -> tuple[dict, ChorusError, list]:
        async with ChorusClient(node.http, get_token=lambda: next(tokens)) as client:
            accepted = await client.post_comment(stream.slug, "with a renewed token")
            with pytest.raises(ChorusError) as refused:
                await client.post_comment(stream.slug, "")
            return accepted, refused.value, client.pending()

    accepted, error, pending = asyncio.run(scenario())
    assert accepted["status"] == "pending"
    assert error.status == 400 and error.code == "invalid" and "body" in (error.fields or {})
    assert not error.retryable and pending == []
