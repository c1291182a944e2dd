"""What the code publishes to the real-time tier, read back from the real Redis pub/sub.

``PublishedEvents`` subscribes to every partition channel of this run's prefix
(``realtime.pubsub_channels``) before the test starts and decodes each message the way a node's
hub does (``realtime.events``). Other processes of the suite may publish on the same channels, so
tests read the messages of their own streams (``of(stream_id)``).

Waiting is on conditions with deadlines, never on sleeps: ``wait_for`` returns once a stream has N
events, and ``settle`` publishes a barrier through ``realtime.events`` and waits for it, so that
everything published before it (by this process) has arrived. "Nothing was published" is then
``of(stream_id) == []`` after a ``settle``: one Redis server delivers a subscriber's messages in
the order it ran the publishes.
"""

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings

from realtime.events import (
    EPOCH_MARK,
    SNAPSHOT_MARK,
    USER_MARK,
    decode_epoch_notice,
    decode_published,
    decode_stream_message,
    decode_user_frame,
    snapshot_broadcast,
    snapshot_kind_version,
)

# The barrier travels as a snapshot of a stream that cannot exist (ids start at 1).
_BARRIER_STREAM = 0
_BARRIER_KIND = "test-barrier"


@dataclass(frozen=True)
class Published:
    """One decoded message: an event (``seq``, ``epoch``), a snapshot or user frame (``name``, and
    ``version`` for a numbered snapshot), or an epoch announcement (``epoch``)."""

    stream_id: int
    kind: str  # "event", "snapshot", "user" or "epoch"
    frame: dict[str, Any] | None  # the JSON frame a socket gets (None for an epoch announcement)
    seq: int | None = None
    epoch: int | None = None
    name: str | None = None  # snapshot kind, or user frame kind
    version: int | None = None
    user_id: int | None = None

    @property
    def event_type(self) -> str | None:
        return None if self.frame is None else self.frame.get("event")

    @property
    def data(self) -> dict[str, Any]:
        """An event's payload (``frame["data"]``)."""
        assert self.frame is not None and self.kind == "event", self
        return self.frame["data"]


def decode(message: bytes) -> Published:
    """A message of a partition channel, as ``realtime.hub`` reads it."""
    stream_id, body = decode_stream_message(message)
    if body.startswith(EPOCH_MARK):
        return Published(stream_id=stream_id, kind="epoch", frame=None, epoch=decode_epoch_notice(body))
    if body.startswith(USER_MARK):
        user_id, name, frame = decode_user_frame(body)
        return Published(stream_id=stream_id, kind="user", frame=json.loads(frame), name=name, user_id=user_id)
    head, frame, epoch = decode_published(body)
    if body.startswith(SNAPSHOT_MARK):
        assert isinstance(head, str)
        name, version = snapshot_kind_version(head)
        return Published(stream_id=stream_id, kind="snapshot", frame=json.loads(frame), name=name, version=version)
    assert isinstance(head, int)
    return Published(stream_id=stream_id, kind="event", frame=json.loads(frame), seq=head, epoch=epoch)


class PublishedEvents:
    """Every message published on this run's partition channels since it was started."""

    def __init__(self) -> None:
        self._client = redis.Redis.from_url(settings.CHORUS_REDIS_URL, socket_timeout=5)
        self._pubsub = self._client.pubsub()
        self.received: list[Published] = []
        self._barriers: set[str] = set()

    def start(self) -> "PublishedEvents":
        """Subscribe, and return once Redis confirmed it: nothing published after this is missed."""
        self._pubsub.psubscribe(f"{settings.CHORUS_REDIS_PREFIX}:ps:*")
        deadline = time.monotonic() + 5
        while True:
            message = self._pubsub.get_message(timeout=1)
            if message is not None and message["type"] == "psubscribe":
                return self
            if time.monotonic() > deadline:
                raise AssertionError("Redis did not confirm the subscription to the partition channels")

    def close(self) -> None:
        self._pubsub.close()
        self._client.close()

    def _read(self, timeout: float) -> bool:
        """Take at most one message (waiting up to ``timeout``); whether one came."""
        message = self._pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
        if message is None or message["type"] != "pmessage":
            return False
        published = decode(message["data"])
        if published.stream_id == _BARRIER_STREAM and published.name == _BARRIER_KIND:
            assert published.frame is not None
            self._barriers.add(published.frame["barrier"])
        else:
            self.received.append(published)
        return True

    def of(self, stream_id: int, kind: str | None = "event") -> list[Published]:
        """What arrived so far for ``stream_id`` (of ``kind``; None for every kind), in arrival order."""
        while self._read(timeout=0):
            pass
        return [p for p in self.received if p.stream_id == stream_id and (kind is None or p.kind == kind)]

    def wait_for(
        self, count: int, *, stream_id: int, kind: str | None = "event", timeout: float = 10
    ) -> list[Published]:
        """Wait until ``count`` messages of ``kind`` arrived for ``stream_id``; returns exactly those
        (fails if more came: a repeat is a defect the caller should see)."""
        deadline = time.monotonic() + timeout
        while len(found := self.of(stream_id, kind)) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{len(found)} of {count} {kind or ''} messages of stream {stream_id}: {found}")
            self._read(timeout=min(remaining, 0.5))
        assert len(found) == count, f"{len(found)} {kind or ''} messages of stream {stream_id}, {count} expected"
        return found

    def settle(self, timeout: float = 10) -> None:
        """Publish a barrier and wait for it: whatever this process published before has arrived."""
        token = uuid.uuid4().hex
        frame = json.dumps({"type": _BARRIER_KIND, "barrier": token})
        snapshot_broadcast(stream_id=_BARRIER_STREAM, kind=_BARRIER_KIND, frame=frame)
        deadline = time.monotonic() + timeout
        while token not in self._barriers:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("the barrier published on Redis did not come back")
            self._read(timeout=min(remaining, 0.5))
