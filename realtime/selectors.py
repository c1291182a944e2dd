"""Reads of streams and their event log."""

from typing import NamedTuple

from realtime.models import Stream, StreamEvent
from realtime.protocol import event_frame


def stream_get(*, slug: str) -> Stream | None:
    return Stream.objects.filter(slug=slug).first()


def stream_get_by_id(*, stream_id: int) -> Stream | None:
    return Stream.objects.filter(id=stream_id).first()


def stream_ids_by_slug(slugs: list[str]) -> dict[str, int]:
    """Stream ids of the slugs that exist, in one query (``realtime.lookups`` batches connects)."""
    return dict(Stream.objects.filter(slug__in=slugs).values_list("slug", "id"))


class StreamPosition(NamedTuple):
    epoch: int
    epoch_seq: int  # the head when the epoch began
    head: int


def stream_positions(*, stream_ids: list[int]) -> dict[int, StreamPosition]:
    """The epoch and head of each stream, in one query."""
    rows = Stream.objects.filter(id__in=stream_ids).values_list("id", "epoch", "epoch_seq", "last_seq")
    return {stream_id: StreamPosition(epoch, epoch_seq, head) for stream_id, epoch, epoch_seq, head in rows}


def stream_event_frames(
    *, stream_id: int, epoch: int, after: int, upto: int | None = None, limit: int = 500
) -> list[tuple[int, str]]:
    """Encoded frames of the events with ``after < seq <= upto``, in sequence order, stamped with
    ``epoch`` (the reader's: a reader that has not yet seen a new epoch gets a reset before it)."""
    events = StreamEvent.objects.filter(stream_id=stream_id, seq__gt=after)
    if upto is not None:
        events = events.filter(seq__lte=upto)
    rows = events.order_by("seq").values_list("seq", "event_id", "type", "payload")[:limit]
    return [
        (seq, event_frame(seq=seq, epoch=epoch, event_id=str(event_id), event_type=event_type, payload=payload))
        for seq, event_id, event_type, payload in rows
    ]


def stream_slugs(*, stream_ids: list[int]) -> dict[int, str]:
    return dict(Stream.objects.filter(id__in=stream_ids).values_list("id", "slug"))
