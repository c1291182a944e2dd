"""Writes to streams and their event log."""

import uuid
from collections.abc import Callable
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from realtime.events import event_broadcast
from realtime.models import Stream, StreamEvent
from realtime.protocol import event_frame

STREAM_OPENED = "stream.opened"
STREAM_CLOSED = "stream.closed"


def stream_create(*, slug: str, title: str) -> Stream:
    stream, _ = Stream.objects.get_or_create(slug=slug, defaults={"title": title})
    return stream


def _stream_state_event(stream: Stream, event_type: str) -> None:
    closed_at = stream.closed_at.isoformat().replace("+00:00", "Z") if stream.closed_at else None
    stream_event_append(
        stream_id=stream.id,
        event_type=event_type,
        event_id=uuid.uuid4(),
        payload={"stream": stream.slug, "closed_at": closed_at},
    )


@transaction.atomic
def stream_open(*, slug: str, title: str) -> Stream:
    """Create a stream, or reopen a closed one (``stream.opened`` event); idempotent."""
    stream = stream_create(slug=slug, title=title)
    if Stream.objects.filter(id=stream.id, closed_at__isnull=False).update(closed_at=None):
        stream.refresh_from_db()
        _stream_state_event(stream, STREAM_OPENED)
    return stream


@transaction.atomic
def stream_close(*, slug: str) -> Stream | None:
    """Close a stream to new comments (``stream.closed`` event); idempotent. None if unknown."""
    stream = Stream.objects.filter(slug=slug).first()
    if stream is None:
        return None
    if Stream.objects.filter(id=stream.id, closed_at__isnull=True).update(closed_at=timezone.now()):
        stream.refresh_from_db()
        _stream_state_event(stream, STREAM_CLOSED)
    return stream


def _next_seq(stream_id: int) -> int:
    # One statement takes the stream's row lock and hands out the next number; the lock is held
    # until the caller's transaction ends, so sequence numbers are assigned in commit order.
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE realtime_stream SET last_seq = last_seq + 1 WHERE id = %s RETURNING last_seq",
            [stream_id],
        )
        row = cursor.fetchone()
    if row is None:
        raise Stream.DoesNotExist(f"stream {stream_id} does not exist")
    return row[0]


Payload = dict[str, Any]


def stream_event_append(
    *,
    stream_id: int,
    event_type: str,
    event_id: uuid.UUID,
    payload: Payload | None = None,
    payload_factory: Callable[[int], Payload] | None = None,
) -> StreamEvent:
    """Append an event with the stream's next sequence number; broadcast it after commit.

    Must run inside the caller's transaction (the one that makes the change the event describes).
    ``event_id`` is unique: appending the same cause twice fails with IntegrityError and rolls the
    whole transaction back, sequence number included. Pass ``payload_factory`` when the payload
    must contain the sequence number it is given.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("stream_event_append must run inside a transaction")
    seq = _next_seq(stream_id)
    if payload_factory is not None:
        payload = payload_factory(seq)
    if payload is None:
        raise ValueError("stream_event_append needs a payload or a payload_factory")
    frame = event_frame(seq=seq, event_id=str(event_id), event_type=event_type, payload=payload)
    event = StreamEvent.objects.create(
        stream_id=stream_id, seq=seq, event_id=event_id, type=event_type, payload=payload
    )
    transaction.on_commit(lambda: event_broadcast(stream_id=stream_id, seq=seq, frame=frame), robust=True)
    return event


def stream_event_rebroadcast(*, event: StreamEvent) -> None:
    """Publish a committed event again (after a redelivered task); subscribers drop the duplicate."""
    frame = event_frame(seq=event.seq, event_id=str(event.event_id), event_type=event.type, payload=event.payload)
    transaction.on_commit(lambda: event_broadcast(stream_id=event.stream_id, seq=event.seq, frame=frame), robust=True)
