"""Stream positions are (epoch, seq): a client resuming in an epoch the stream has left is told so
(a ``reset`` frame, then live events), on both servers, and so is every socket connected when a
stream's log is reset or its epoch bumped after a restore."""

import asyncio
import json
import time
import uuid

import httpx
import pytest
import redis
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction

from comments.models import Comment
from realtime.client import ChorusClient, Gap
from realtime.events import decode_published, decode_stream_message
from realtime.models import Stream, StreamEvent
from realtime.pubsub_channels import stream_channel
from realtime.services import NewEvent, stream_epoch_bump, stream_events_append
from tests.conftest import Stack
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)

SERVERS = ["uvicorn", "daphne"]  # the shared stack's nodes, in order


def _append(stream_id: int, n: int) -> None:
    """n events through the service, published after commit as every write does."""
    with transaction.atomic():
        stream_events_append(
            stream_id=stream_id,
            events=[NewEvent("test.thing", uuid.uuid4(), lambda seq: {"n": seq}) for _ in range(n)],
        )


def _restore(stream_id: int, seq: int) -> None:
    """What a restore from an older backup leaves: the log, comments and head back at ``seq``."""
    with transaction.atomic():
        StreamEvent.objects.filter(stream_id=stream_id, seq__gt=seq).delete()
        Comment.objects.filter(stream_id=stream_id, seq__gt=seq).delete()
        Stream.objects.filter(id=stream_id).update(last_seq=seq)


def _node(live, server):
    return live.nodes[SERVERS.index(server)]


def _kinds(frames):
    """Frames as (type, epoch, seq), presence and other snapshots left out."""
    return [
        (f["type"], f.get("epoch"), f.get("seq", f.get("head")))
        for f in frames
        if f["type"] in ("hello", "reset", "event")
    ]


@pytest.mark.parametrize("server", SERVERS)
def test_resume_with_an_old_epoch_gets_a_reset_then_live_events(live: Stack, stream: Stream, server) -> None:
    """?after=N&epoch=<old>: hello and a reset at the new position, no catch-up, then live events."""
    # given a client that saw events 1..5 of epoch 1, then the stream restored to seq 3 and bumped
    _append(stream.id, 5)
    _restore(stream.id, 3)
    new_epoch = stream_epoch_bump(stream_id=stream.id).epoch
    assert new_epoch != 1
    _append(stream.id, 2)  # seq 4 and 5 again, other events of the new epoch

    # when it resumes where it was
    client = WsClient(f"{_node(live, server).ws}/ws/streams/{stream.slug}/?after=5&epoch=1")
    _append(stream.id, 1)  # seq 6, live

    # then: told, at the head, and only what follows it
    client.wait_for_seq(6)
    assert _kinds(client.frames) == [
        ("hello", new_epoch, 5),
        ("reset", new_epoch, 5),
        ("event", new_epoch, 6),
    ]
    client.close()


@pytest.mark.parametrize("server", SERVERS)
def test_resume_with_the_current_epoch_replays_as_before(live: Stack, stream: Stream, server) -> None:
    """?after=N&epoch=<current> replays N+1.. from the log and joins live events with no seam."""
    _append(stream.id, 3)
    bumped = stream_epoch_bump(stream_id=stream.id, reset_log=True).epoch  # the log starts again after 3
    _append(stream.id, 4)  # 4..7

    client = WsClient(f"{_node(live, server).ws}/ws/streams/{stream.slug}/?after=5&epoch={bumped}")
    _append(stream.id, 1)
    events = client.wait_for_seq(8)
    assert [(e["epoch"], e["seq"]) for e in events] == [(bumped, 6), (bumped, 7), (bumped, 8)]
    assert not [f for f in client.frames if f["type"] == "reset"]
    client.close()


def test_resume_without_an_epoch_is_in_the_current_epoch(live: Stack, stream: Stream) -> None:
    """Old clients send no epoch: their ``after`` is taken in the current epoch, as before epochs."""
    _append(stream.id, 4)
    client = WsClient(f"{live.nodes[0].ws}/ws/streams/{stream.slug}/?after=2")
    assert [(e["epoch"], e["seq"]) for e in client.wait_for_seq(4)] == [(1, 3), (1, 4)]
    client.close()


def test_a_log_reset_reaches_connected_sockets_on_both_servers(live: Stack, stream: Stream) -> None:
    """Sockets connected during a log reset get a reset at the old head, then the new epoch's events."""
    # given sockets on both nodes, one live, one resuming from the log, that saw 1..3
    clients = [WsClient(f"{node.ws}/ws/streams/{stream.slug}/?after=0") for node in live.nodes]
    _append(stream.id, 3)
    for client in clients:
        client.wait_for_seq(3)

    # when the log is reset, and more events follow
    call_command("stream_reset", stream.slug)
    stream.refresh_from_db()
    assert stream.epoch > 1 and stream.epoch_seq == 3
    assert not StreamEvent.objects.filter(stream_id=stream.id).exists()
    _append(stream.id, 2)

    # then every socket: the old epoch, the reset, the new epoch, each event once
    for client in clients:
        client.wait_for_seq(5)
        assert _kinds(client.frames)[1:] == [
            ("event", 1, 1),
            ("event", 1, 2),
            ("event", 1, 3),
            ("reset", stream.epoch, 3),
            ("event", stream.epoch, 4),
            ("event", stream.epoch, 5),
        ]
        client.close()


def test_a_restore_reaches_connected_sockets_with_no_event_published(live: Stack, stream: Stream) -> None:
    """After a restore, a bump with nothing published after it still reaches sockets (announced,
    or seen by the tail check), and the restored head's next numbers arrive in the new epoch."""
    clients = [WsClient(f"{node.ws}/ws/streams/{stream.slug}/") for node in live.nodes]
    _append(stream.id, 5)
    for client in clients:
        client.wait_for_seq(5)

    _restore(stream.id, 2)
    epoch = stream_epoch_bump(stream_id=stream.id).epoch
    for client in clients:
        client.wait_for(lambda frames: any(f["type"] == "reset" for f in frames), timeout=15, what="reset")
    _append(stream.id, 1)  # seq 3 again, a different event

    for client in clients:
        client.wait_for(lambda frames: frames[-1].get("epoch") == epoch and frames[-1].get("seq") == 3, timeout=15)
        assert _kinds(client.frames)[-2:] == [("reset", epoch, 2), ("event", epoch, 3)]
        client.close()


def test_resync_with_an_old_epoch_is_answered_by_a_reset(live: Stack, stream: Stream) -> None:
    """A resync frame naming another epoch gets a reset at the socket's position, not old events."""
    _append(stream.id, 2)
    epoch = stream_epoch_bump(stream_id=stream.id).epoch
    client = WsClient(f"{live.nodes[1].ws}/ws/streams/{stream.slug}/")
    _append(stream.id, 1)
    client.wait_for_seq(3)
    client.send({"type": "resync", "after": 1, "epoch": 1})
    client.wait_for(lambda frames: frames[-1]["type"] == "reset", timeout=10, what="reset")
    assert client.frames[-1] == {"type": "reset", "epoch": epoch, "seq": 3}
    client.send({"type": "resync", "after": 2, "epoch": epoch})  # the current epoch: re-sent
    client.wait_for(lambda frames: frames[-1].get("seq") == 3 and frames[-1]["type"] == "event", timeout=10)
    client.close()


def test_comment_pages_report_the_position_and_refuse_an_old_epoch(
    live: Stack, stream: Stream, http: httpx.Client
) -> None:
    """A page asked for with an old epoch is a 409 history_reset with the position to start from."""
    _append(stream.id, 2)
    base = f"{live.nodes[0].http}/api/v1/streams/{stream.slug}/comments"
    assert http.get(base, params={"after": 0, "epoch": 1}).json()["counts"] == {"epoch": 1, "head": 2, "comments": 0}
    epoch = stream_epoch_bump(stream_id=stream.id).epoch

    refused = http.get(base, params={"after": 0, "epoch": 1})
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "history_reset"
    assert refused.json()["position"] == {"epoch": epoch, "seq": 2}
    assert http.get(base, params={"tail": 0}).json()["position"] == {"epoch": epoch, "seq": 2}
    assert http.get(base).json()["counts"]["epoch"] == epoch  # no epoch asked: as before
    bad = http.get(base, params={"epoch": "x"})
    assert bad.status_code == 400 and "epoch" in bad.json()["fields"]


def test_epoch_query_parameter_is_validated(live: Stack, stream: Stream) -> None:
    """A malformed epoch closes the socket with 4400 and names the parameter."""
    client = WsClient(f"{live.nodes[0].ws}/ws/streams/{stream.slug}/?after=0&epoch=abc")
    assert client.wait_closed() == 4400
    assert "epoch" in client.frames[0]["message"]


def test_stream_reset_command_refuses_unknown_streams_and_bumps_all(live: Stack, stream: Stream) -> None:
    """``stream_reset --all --keep-log`` bumps every epoch and keeps logs; unknown names fail."""
    _append(stream.id, 2)
    with pytest.raises(CommandError):
        call_command("stream_reset", "no-such-stream")
    with pytest.raises(CommandError):
        call_command("stream_reset")
    call_command("stream_reset", "--all", "--keep-log")
    stream.refresh_from_db()
    assert stream.epoch > 1 and stream.epoch_seq == 2
    assert StreamEvent.objects.filter(stream_id=stream.id).count() == 2
    before = stream.epoch
    call_command("stream_reset", "--all", "--keep-log")
    stream.refresh_from_db()
    assert stream.epoch > before  # never the same twice, even within a second


def test_python_client_reports_a_reset_as_a_gap_and_resumes_in_the_new_epoch(live: Stack, stream: Stream) -> None:
    """realtime.client: a log reset under a live subscription is a gap into the new epoch; a saved
    position of the new epoch resumes as before, one of the old epoch is a gap again."""

    async def scenario() -> tuple[list[Gap], list[Gap], dict, list[tuple]]:
        async with ChorusClient(live.nodes[0].http, backoff=(0.05, 0.2)) as client:
            gaps: list[Gap] = []
            sub = client.subscribe(stream.slug, tail=0)
            sub.on("gap", gaps.append)
            await sub.wait_live(timeout=30)
            await asyncio.to_thread(_append, stream.id, 2)
            await _until(lambda: sub.position["seq"] == 2)
            await asyncio.to_thread(call_command, "stream_reset", stream.slug)
            await _until(lambda: gaps and sub.state == "live")
            await asyncio.to_thread(_append, stream.id, 1)
            await _until(lambda: sub.position["seq"] == 3)
            saved = dict(sub.position)
            await sub.close()

            # resumed with the saved position: no gap; with the old epoch: a gap again
            events: list[tuple] = []
            resumed = client.subscribe(stream.slug, after=saved["seq"], epoch=saved["epoch"])
            resumed.on("event", lambda frame: events.append((frame["epoch"], frame["seq"])))
            stale_gaps: list[Gap] = []
            stale = client.subscribe(stream.slug, after=2, epoch=1, tail=0)
            stale.on("gap", stale_gaps.append)
            await asyncio.gather(resumed.wait_live(timeout=30), stale.wait_live(timeout=30))
            await asyncio.to_thread(_append, stream.id, 1)
            await _until(lambda: events and stale_gaps)
            return gaps, stale_gaps, saved, events

    gaps, stale_gaps, saved, events = asyncio.run(scenario())
    stream.refresh_from_db()
    assert [(g.from_, g.to, g.reason) for g in gaps] == [
        ({"epoch": 1, "seq": 2}, {"epoch": stream.epoch, "seq": 2}, "reset")
    ]
    assert saved == {"epoch": stream.epoch, "seq": 3}
    assert events == [(stream.epoch, 4)]
    assert [(g.from_, g.reason) for g in stale_gaps] == [({"epoch": 1, "seq": 2}, "reset")]


async def _until(predicate, timeout: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_published_events_keep_the_format_of_the_release_before_epochs(live: Stack, stream: Stream) -> None:
    """A rolling upgrade mixes releases: the published message is still "<stream>|<seq>\\n<frame>"
    (what an older node parses), and a node takes an older node's frames, which carry no epoch."""
    pubsub = redis.Redis.from_url(settings.CHORUS_REDIS_URL).pubsub()
    pubsub.subscribe(stream_channel(stream.id))
    client = WsClient(f"{live.nodes[1].ws}/ws/streams/{stream.slug}/")
    try:
        _append(stream.id, 1)
        message = None
        deadline = time.monotonic() + 10
        while message is None or message["type"] != "message":
            assert time.monotonic() < deadline, "nothing published"
            message = pubsub.get_message(timeout=1)
        stream_id, body = decode_stream_message(message["data"])
        head, _, frame = body.partition(b"\n")
        assert (stream_id, int(head)) == (stream.id, 1) and json.loads(frame)["epoch"] == 1
        assert decode_published(body) == (1, frame.decode(), 1)

        # the next event as an older node writes and publishes it: no epoch in its frame
        event_id = uuid.uuid4()
        with transaction.atomic():
            StreamEvent.objects.create(stream_id=stream.id, seq=2, event_id=event_id, type="test.thing", payload={})
            Stream.objects.filter(id=stream.id).update(last_seq=2)
        old = {"type": "event", "seq": 2, "id": str(event_id), "event": "test.thing", "data": {}}
        message = f"{stream.id}|2\n{json.dumps(old)}"
        redis.Redis.from_url(settings.CHORUS_REDIS_URL).publish(stream_channel(stream.id), message)
        client.wait_for_seq(2)
        assert client.events()[-1] == old  # forwarded as published (a repair from the log would add the epoch)
        assert [e["seq"] for e in client.events()] == [1, 2]
    finally:
        pubsub.close()
        client.close()


@pytest.mark.parametrize("server", SERVERS)
def test_a_reset_reaches_a_socket_out_of_credit_and_voids_what_it_held(live: Stack, stream: Stream, server) -> None:
    """A paced socket gets the reset without credit; events it held from the old epoch are dropped,
    and with credit it continues after the reset's position."""
    client = WsClient(f"{_node(live, server).ws}/ws/streams/{stream.slug}/?after=0&credit=2")
    _append(stream.id, 4)
    client.wait_for_seq(2)
    epoch = stream_epoch_bump(stream_id=stream.id, reset_log=True).epoch
    _append(stream.id, 1)  # seq 5, the new epoch's first
    client.wait_for(lambda frames: frames[-1]["type"] == "reset", timeout=15, what="the reset")
    client.send({"type": "credit", "n": 5})
    client.wait_for_seq(5)
    assert _kinds(client.frames)[1:] == [
        ("event", 1, 1),
        ("event", 1, 2),
        ("reset", epoch, 4),
        ("event", epoch, 5),
    ]
    client.close()
