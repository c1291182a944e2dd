"""Writes to streams and their event log."""

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from project import bulk_sql
from realtime.events import epoch_broadcast, event_broadcast, events_broadcast
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


def _advance_head(stream_id: int, count: int) -> tuple[int, int]:
    """Hand out ``count`` sequence numbers; returns the last and the stream's epoch. Takes the
    stream's row lock.

    One statement takes the lock and moves the head; the lock is held until the caller's
    transaction ends, so numbers are assigned in commit order and a rollback takes them back.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE realtime_stream SET last_seq = last_seq + %s WHERE id = %s RETURNING last_seq, epoch",
            [count, stream_id],
        )
        row = cursor.fetchone()
    if row is None:
        raise Stream.DoesNotExist(f"stream {stream_id} does not exist")
    return int(row[0]), int(row[1])


Payload = dict[str, Any]


@dataclass(frozen=True)
class NewEvent:
    """An event to append: ``payload_factory`` gets the sequence number the event is given."""

    event_type: str
    event_id: uuid.UUID
    payload_factory: Callable[[int], Payload]
    subject: uuid.UUID | None = None  # whose content the payload carries (``stream_events_redact``)


def stream_events_append(*, stream_id: int, events: Sequence[NewEvent]) -> list[StreamEvent]:
    """Append events with the stream's next sequence numbers, in order; broadcast them after commit.

    Must run inside the caller's transaction (the one that makes the changes the events describe).
    One update of the stream head and one multi-row insert, however many events: the sequencer's
    group commit. ``event_id`` is unique: appending the same cause twice fails with IntegrityError
    and rolls the whole transaction back, sequence numbers included.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("stream_events_append must run inside a transaction")
    if not events:
        return []
    last, epoch = _advance_head(stream_id, len(events))
    rows: list[StreamEvent] = []
    frames: list[tuple[int, str]] = []
    for seq, new in enumerate(events, start=last - len(events) + 1):
        payload = new.payload_factory(seq)
        event_id = str(new.event_id)
        frame = event_frame(seq=seq, epoch=epoch, event_id=event_id, event_type=new.event_type, payload=payload)
        frames.append((seq, frame))
        rows.append(
            StreamEvent(
                stream_id=stream_id,
                seq=seq,
                event_id=new.event_id,
                type=new.event_type,
                payload=payload,
                subject=new.subject,
            )
        )
    _events_insert(rows)
    transaction.on_commit(lambda: events_broadcast(stream_id=stream_id, frames=frames), robust=True)
    return rows


def _events_insert(rows: list[StreamEvent]) -> None:
    """One multi-row insert (``project.bulk_sql`` on PostgreSQL: the ORM's per-row cost was larger
    than the database's)."""
    if bulk_sql.supported():
        bulk_sql.rows_insert(rows)
    else:
        StreamEvent.objects.bulk_create(rows)


def stream_event_append(
    *,
    stream_id: int,
    event_type: str,
    event_id: uuid.UUID,
    payload: Payload | None = None,
    payload_factory: Callable[[int], Payload] | None = None,
    subject: uuid.UUID | None = None,
) -> StreamEvent:
    """Append one event (``stream_events_append`` of one); pass ``payload_factory`` when the
    payload must contain the sequence number it is given."""
    if payload_factory is None:
        if payload is None:
            raise ValueError("stream_event_append needs a payload or a payload_factory")
        payload_factory = _constant(payload)
    (event,) = stream_events_append(
        stream_id=stream_id,
        events=[NewEvent(event_type=event_type, event_id=event_id, payload_factory=payload_factory, subject=subject)],
    )
    return event


def stream_events_redact(*, subject: uuid.UUID, changes: Payload) -> int:
    """Overwrite ``changes`` in the stored payload of every event about ``subject``; returns how
    many payloads changed.

    For content that must not be served again (a deleted comment, an edit's previous body): every
    reader of the log (replay, resync, gap repair) encodes frames from the stored payload, so from
    the commit of the caller's transaction on nobody reads the old content from the log. The events
    keep their ``seq``, ``type`` and ``event_id``. Frames already delivered (or published and in
    flight) are not recalled. Must run inside the caller's transaction, which must hold a lock
    that orders writers of ``subject`` (the comment's row lock), so the last writer's content wins.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("stream_events_redact must run inside a transaction")
    events = [
        event
        for event in StreamEvent.objects.filter(subject=subject).only("id", "payload")
        if any(event.payload.get(key) != value for key, value in changes.items())
    ]
    for event in events:
        event.payload = {**event.payload, **changes}
    StreamEvent.objects.bulk_update(events, ["payload"])
    return len(events)


def _constant(payload: Payload) -> Callable[[int], Payload]:
    return lambda _seq: payload


def stream_event_rebroadcast(*, event: StreamEvent) -> None:
    """Publish a committed event again (after a redelivered task); subscribers drop the duplicate."""
    epoch = Stream.objects.filter(id=event.stream_id).values_list("epoch", flat=True).get()
    frame = event_frame(
        seq=event.seq, epoch=epoch, event_id=str(event.event_id), event_type=event.type, payload=event.payload
    )
    transaction.on_commit(lambda: event_broadcast(stream_id=event.stream_id, seq=event.seq, frame=frame), robust=True)


def _next_epoch(current: int) -> int:
    """An epoch greater than any handed out before, even by the database a backup was taken of:
    the clock has moved on while the backup waited, so a restored stream never repeats an epoch."""
    return max(current + 1, int(time.time()))


@transaction.atomic
def stream_epoch_bump(*, stream_id: int, reset_log: bool = False) -> Stream:
    """Start a new epoch of the stream at its current head; with ``reset_log``, delete its event log.

    Positions of the old epoch become void: a socket connected in it gets a ``reset`` frame (its
    node sees the announcement, or the change at its next tail check), and a client resuming with
    it gets one instead of a catch-up. After a restore from a backup, run this for every stream
    (``manage.py stream_reset --all --keep-log``) before nodes serve clients. Sequence numbers go on
    from the head, so a log reset keeps them unique. Takes the stream's row lock, so no event is
    appended meanwhile; announces the epoch after commit. Raises Stream.DoesNotExist.
    """
    stream = Stream.objects.select_for_update().get(id=stream_id)
    stream.epoch = _next_epoch(stream.epoch)
    stream.epoch_seq = stream.last_seq
    stream.save(update_fields=["epoch", "epoch_seq"])
    if reset_log:
        StreamEvent.objects.filter(stream_id=stream_id).delete()
    epoch = stream.epoch
    transaction.on_commit(lambda: epoch_broadcast(stream_id=stream_id, epoch=epoch), robust=True)
    return stream
