"""Group commit of comment posts: a batch decides each comment exactly as ``comment_accept`` would.

Service level, on the real PostgreSQL: the same requests are accepted one by one on one stream
and as one batch on a twin stream, and every outcome (created, replayed, refused and why) must
match. The batch costs a fixed number of statements whatever its size.
"""

import uuid
from dataclasses import replace

import pytest
from django.utils import timezone
from pytest_django import DjangoAssertNumQueries

from comments.models import Comment, CommentStatus
from comments.services import (
    AcceptOutcome,
    AcceptRequest,
    IdempotencyKeyReused,
    InvalidParent,
    StreamClosed,
    StreamNotFound,
    comment_accept,
    comments_accept_batch,
)
from realtime.models import Stream
from tests.factories import StreamFactory, UserFactory

pytestmark = [pytest.mark.services, pytest.mark.django_db]


def _one_by_one(requests: list[AcceptRequest]) -> list[AcceptOutcome]:
    outcomes = []
    for request in requests:
        stream = Stream.objects.filter(id=request.stream_id).first()
        if stream is None:
            outcomes.append(AcceptOutcome(error=StreamNotFound(request.slug)))
            continue
        try:
            comment, created = comment_accept(
                stream=stream,
                author_id=request.author_id,
                body=request.body,
                parent_id=request.parent_id,
                idempotency_key=request.idempotency_key,
            )
        except (StreamClosed, InvalidParent, IdempotencyKeyReused) as exc:
            outcomes.append(AcceptOutcome(error=exc))
        else:
            outcomes.append(AcceptOutcome(comment=comment, created=created))
    return outcomes


def _shape(outcome: AcceptOutcome) -> tuple[object, ...]:
    """What a client can tell apart: refused (and why), created, or the replay of which request."""
    if outcome.error is not None:
        return ("refused", type(outcome.error).__name__)
    assert outcome.comment is not None
    return ("accepted", outcome.created, outcome.comment.body, outcome.comment.status)


def _scenario(stream: Stream, closed: Stream, gone_id: int) -> tuple[list[AcceptRequest], uuid.UUID]:
    """Every rule of the accept path, for ``stream``; the parent and earlier keys already exist."""
    alice, bob = UserFactory.create(), UserFactory.create()
    parent = Comment.objects.create(
        stream=stream, author=bob, body="parent", idempotency_key=f"p-{uuid.uuid4()}", status=CommentStatus.PUBLISHED
    )
    comment_accept(stream=stream, author_id=alice.id, body="earlier", idempotency_key="earlier")
    base = AcceptRequest(stream_id=stream.id, slug=stream.slug, author_id=alice.id, body="x")
    requests = [
        replace(base, body="plain"),
        replace(base, body="keyed", idempotency_key="k1"),
        replace(base, body="keyed", idempotency_key="k1"),  # the same request twice in one batch
        replace(base, body="other body", idempotency_key="k1"),  # the key reused for another request
        replace(base, author_id=bob.id, body="keyed", idempotency_key="k1"),  # keys are per author
        replace(base, body="earlier", idempotency_key="earlier"),  # a retry of an earlier request
        replace(base, body="not earlier", idempotency_key="earlier"),  # the earlier key, reused
        replace(base, body="reply", parent_id=parent.id),
        replace(base, body="reply to nothing", parent_id=uuid.uuid4()),
        replace(base, stream_id=closed.id, slug=closed.slug, body="too late"),
        replace(base, stream_id=gone_id, slug="gone", body="nowhere"),
        replace(base, body="plain"),  # no key: a second, distinct comment
    ]
    return requests, parent.id


def _streams() -> tuple[Stream, Stream]:
    return StreamFactory.create(slug=f"s-{uuid.uuid4().hex[:10]}"), StreamFactory.create(
        slug=f"c-{uuid.uuid4().hex[:10]}", closed_at=timezone.now()
    )


def test_a_batch_decides_every_comment_as_one_by_one_accepts_would() -> None:
    # given: the same scenario on two twin streams
    single_stream, single_closed = _streams()
    batch_stream, batch_closed = _streams()
    gone = StreamFactory.create(slug=f"g-{uuid.uuid4().hex[:10]}")
    gone_id = gone.id
    gone.delete()
    single_requests, _ = _scenario(single_stream, single_closed, gone_id)
    batch_requests, _ = _scenario(batch_stream, batch_closed, gone_id)

    # when
    single = _one_by_one(single_requests)
    batch = comments_accept_batch(requests=batch_requests)

    # then: every outcome alike, and the rows alike
    assert [_shape(o) for o in batch] == [_shape(o) for o in single]
    assert sorted(Comment.objects.filter(stream=batch_stream).values_list("body", flat=True)) == sorted(
        Comment.objects.filter(stream=single_stream).values_list("body", flat=True)
    )
    # a replay answers with the very comment the first request made
    assert batch[2].comment is not None and batch[1].comment is not None
    assert batch[2].comment.id == batch[1].comment.id
    assert [type(o.error) for o in batch if o.error is not None] == [
        IdempotencyKeyReused,
        IdempotencyKeyReused,
        InvalidParent,
        StreamClosed,
        StreamNotFound,
    ]


def test_a_batch_costs_the_same_statements_for_one_comment_or_a_hundred(
    django_assert_max_num_queries: DjangoAssertNumQueries,
) -> None:
    stream, _ = _streams()
    user = UserFactory.create()

    def batch(size: int) -> list[AcceptRequest]:
        return [
            AcceptRequest(stream_id=stream.id, slug=stream.slug, author_id=user.id, body=f"c{i}", idempotency_key=None)
            for i in range(size)
        ]

    # streams, INSERT, the rows that made it, inside one transaction (savepoint + release in tests)
    with django_assert_max_num_queries(5):
        one = comments_accept_batch(requests=batch(1))
    with django_assert_max_num_queries(5):
        hundred = comments_accept_batch(requests=batch(100))

    assert all(o.created for o in [*one, *hundred])
    assert Comment.objects.filter(stream=stream).count() == 101
