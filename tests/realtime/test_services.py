"""Service tier of the real-time tier's writes and reads: the event log (append, numbering,
redaction), epochs, opening and closing streams, and what is published for them.

Called directly on the real PostgreSQL and Redis, without a node: what a node would receive is
read back from the pub/sub channels (``published_events``). Each test's transaction is rolled
back at its end; after-commit broadcasts run where a test captures them.
"""

import functools
import json
import time
import uuid
from typing import Any

import pytest
from django.db import IntegrityError, transaction
from pytest_django import DjangoAssertNumQueries, DjangoCaptureOnCommitCallbacks

from realtime.models import Stream, StreamEvent
from realtime.selectors import stream_event_frames, stream_ids_by_slug, stream_positions
from realtime.services import (
    STREAM_CLOSED,
    STREAM_OPENED,
    NewEvent,
    stream_close,
    stream_epoch_bump,
    stream_event_append,
    stream_events_append,
    stream_events_redact,
    stream_open,
)
from tests.factories import StreamFactory
from tests.support.published import PublishedEvents

pytestmark = [pytest.mark.services, pytest.mark.django_db]


def _stream() -> Stream:
    return StreamFactory.create(slug=f"e-{uuid.uuid4().hex[:10]}")


def _payload(i: int, seq: int) -> dict[str, Any]:
    return {"i": i, "seq": seq}


def _new(n: int, *, subject: uuid.UUID | None = None) -> list[NewEvent]:
    return [
        NewEvent(
            event_type="test.event",
            event_id=uuid.uuid4(),
            payload_factory=functools.partial(_payload, i),
            subject=subject,
        )
        for i in range(n)
    ]


def _head(stream: Stream) -> tuple[int, int, int]:
    """``(epoch, epoch_seq, last_seq)`` as stored."""
    return Stream.objects.values_list("epoch", "epoch_seq", "last_seq").get(id=stream.id)


def test_events_take_the_next_numbers_in_order_and_a_duplicate_gives_its_number_back() -> None:
    stream = _stream()

    appended = stream_events_append(stream_id=stream.id, events=_new(3))
    duplicate = appended[0].event_id
    with pytest.raises(IntegrityError), transaction.atomic():  # the same cause appended twice
        stream_event_append(stream_id=stream.id, event_type="test.event", event_id=duplicate, payload={})
    after = stream_event_append(stream_id=stream.id, event_type="test.event", event_id=uuid.uuid4(), payload={})

    assert [(e.seq, e.payload) for e in appended] == [
        (1, {"i": 0, "seq": 1}),
        (2, {"i": 1, "seq": 2}),
        (3, {"i": 2, "seq": 3}),
    ]
    assert after.seq == 4  # no gap where the rolled-back one was
    assert list(StreamEvent.objects.filter(stream=stream).order_by("seq").values_list("seq", flat=True)) == [1, 2, 3, 4]
    assert _head(stream) == (1, 0, 4)


@pytest.mark.parametrize("count", [1, 100])
def test_appending_a_batch_costs_two_statements_whatever_its_size(
    count: int, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    """The head update (which takes the stream's row lock) and one multi-row insert."""
    stream = _stream()
    with django_assert_num_queries(2):
        stream_events_append(stream_id=stream.id, events=_new(count))
    assert _head(stream)[2] == count


def test_appended_events_are_broadcast_after_commit_as_a_replay_would_encode_them(
    published_events: PublishedEvents, django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks
) -> None:
    stream = _stream()

    with django_capture_on_commit_callbacks(execute=True):
        stream_events_append(stream_id=stream.id, events=_new(5))
        published_events.settle()
        assert published_events.of(stream.id) == []

    frames = published_events.wait_for(5, stream_id=stream.id)
    assert [(f.seq, f.epoch) for f in frames] == [(seq, 1) for seq in range(1, 6)]
    replayed = stream_event_frames(stream_id=stream.id, epoch=1, after=0)
    assert [json.loads(frame) for _, frame in replayed] == [f.frame for f in frames]


def test_a_new_epoch_starts_at_the_head_is_announced_after_commit_and_stamps_later_events(
    published_events: PublishedEvents, django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks
) -> None:
    stream = _stream()
    stream_events_append(stream_id=stream.id, events=_new(2))
    before = time.time()

    with django_capture_on_commit_callbacks(execute=True):
        bumped = stream_epoch_bump(stream_id=stream.id)
        published_events.settle()
        assert published_events.of(stream.id, kind="epoch") == []
    with django_capture_on_commit_callbacks(execute=True):
        stream_events_append(stream_id=stream.id, events=_new(1))

    epoch = bumped.epoch
    assert epoch >= int(before) and _head(stream) == (epoch, 2, 3)  # above any epoch a backup could hold
    (announced,) = published_events.wait_for(1, stream_id=stream.id, kind="epoch")
    assert announced.epoch == epoch
    (later,) = published_events.wait_for(1, stream_id=stream.id)
    assert (later.seq, later.epoch) == (3, epoch)


def test_a_log_reset_keeps_numbers_unique_and_a_reader_gets_its_own_epoch() -> None:
    stream = _stream()
    stream_events_append(stream_id=stream.id, events=_new(3))

    reset = stream_epoch_bump(stream_id=stream.id, reset_log=True)
    stream_events_append(stream_id=stream.id, events=_new(2))

    assert list(StreamEvent.objects.filter(stream=stream).values_list("seq", flat=True).order_by("seq")) == [4, 5]
    assert _head(stream) == (reset.epoch, 3, 5)
    stamped = stream_event_frames(stream_id=stream.id, epoch=reset.epoch, after=0)
    assert [(seq, json.loads(frame)["epoch"]) for seq, frame in stamped] == [(4, reset.epoch), (5, reset.epoch)]


def test_opening_and_closing_a_stream_is_idempotent_and_logged_once_per_change() -> None:
    slug = f"o-{uuid.uuid4().hex[:10]}"

    stream = stream_open(slug=slug, title="Live")
    assert stream_open(slug=slug, title="Other title").id == stream.id
    closed = stream_close(slug=slug)
    stream_close(slug=slug)
    reopened = stream_open(slug=slug, title="Live")

    assert stream_close(slug="no-such-stream") is None
    assert closed is not None and closed.closed_at is not None
    assert reopened.closed_at is None
    log = list(StreamEvent.objects.filter(stream=stream).order_by("seq").values_list("type", "payload"))
    assert [t for t, _ in log] == [STREAM_CLOSED, STREAM_OPENED]
    assert log[0][1]["stream"] == slug and log[0][1]["closed_at"].endswith("Z")
    assert log[1][1] == {"stream": slug, "closed_at": None}


def test_redaction_rewrites_the_payloads_of_one_subject_and_nothing_else() -> None:
    stream, subject = _stream(), uuid.uuid4()
    for seq_events in (_new(2, subject=subject), _new(1), _new(1, subject=subject)):
        stream_events_append(stream_id=stream.id, events=seq_events)
    identities = list(StreamEvent.objects.filter(stream=stream).order_by("seq").values_list("seq", "event_id", "type"))

    assert stream_events_redact(subject=subject, changes={"i": None}) == 3
    assert stream_events_redact(subject=subject, changes={"i": None}) == 0  # already so

    rows = StreamEvent.objects.filter(stream=stream).order_by("seq")
    assert [row.payload["i"] for row in rows] == [None, None, 0, None]
    assert list(rows.values_list("seq", "event_id", "type")) == identities


def test_positions_and_ids_of_many_streams_are_one_query_each(
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    streams = [_stream() for _ in range(5)]
    stream_events_append(stream_id=streams[1].id, events=_new(4))
    stream_epoch_bump(stream_id=streams[2].id)

    with django_assert_num_queries(2):
        positions = stream_positions(stream_ids=[s.id for s in streams])
        ids = stream_ids_by_slug([s.slug for s in streams] + ["missing"])

    assert positions[streams[1].id] == (1, 0, 4)
    assert positions[streams[2].id].epoch > 1
    assert ids == {s.slug: s.id for s in streams}


def test_a_page_of_the_log_is_bounded_on_both_sides() -> None:
    stream = _stream()
    stream_events_append(stream_id=stream.id, events=_new(10))

    assert [seq for seq, _ in stream_event_frames(stream_id=stream.id, epoch=1, after=3, upto=6)] == [4, 5, 6]
    assert [seq for seq, _ in stream_event_frames(stream_id=stream.id, epoch=1, after=3, limit=2)] == [4, 5]
    assert stream_event_frames(stream_id=stream.id, epoch=1, after=10) == []


@pytest.mark.django_db(transaction=True)
def test_an_event_cannot_be_appended_outside_the_transaction_of_its_change() -> None:
    stream = _stream()
    with pytest.raises(RuntimeError):
        stream_events_append(stream_id=stream.id, events=_new(1))
    with pytest.raises(RuntimeError):
        stream_events_redact(subject=uuid.uuid4(), changes={})
    assert _head(stream) == (1, 0, 0)
