"""Service tier of comments: accept, publish, edit and delete, and the reads behind a page.

The services are called directly on the real PostgreSQL and Redis; no node, no worker. Each test
runs in a transaction rolled back at its end, so the after-commit work (the publish nudge, the
broadcast) does not run unless a test captures it (``django_capture_on_commit_callbacks``) or
commits for real (the ``transaction=True`` tests at the end). Nothing here sends a Celery task.
The group-commit accept (``test_accept_batch.py``) and the publish batch's fixed cost
(``test_sequencer.py``) are in the tier too.
"""

import uuid
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.test import Client
from django.utils import timezone
from pytest_django import DjangoAssertNumQueries, DjangoCaptureOnCommitCallbacks, Settings

from comments.models import Comment, CommentRevision, CommentStatus
from comments.representation import comment_as_dict
from comments.selectors import comment_history, comment_page, comment_tail, comments_pending_by_stream
from comments.services import (
    COMMENT_CREATED,
    COMMENT_DELETED,
    COMMENT_EDITED,
    PUBLISH_TASK,
    AcceptRequest,
    CommentChangeForbidden,
    CommentNotEditable,
    CommentNotFound,
    IdempotencyKeyReused,
    InvalidParent,
    StreamClosed,
    VersionMismatch,
    comment_accept,
    comment_delete,
    comment_edit,
    comment_event_id,
    comment_publish,
    comments_accept_batch,
    comments_publish_batch,
)
from delivery.models import OutboxMessage
from realtime.models import Stream, StreamEvent
from tests.factories import StreamFactory, UserFactory
from tests.support.published import PublishedEvents

pytestmark = [pytest.mark.services, pytest.mark.django_db]


def _user(**fields: Any) -> User:
    return UserFactory.create(password=None, **fields)  # no password to hash: the slow part of a user


def _stream(**fields: Any) -> Stream:
    return StreamFactory.create(slug=f"s-{uuid.uuid4().hex[:10]}", **fields)


def _accept(stream: Stream, author: User, body: str, **fields: Any) -> Comment:
    comment, created = comment_accept(stream=stream, author_id=author.pk, body=body, **fields)
    assert created
    return comment


def _published(stream: Stream, bodies: list[str], author: User | None = None) -> list[Comment]:
    """Comments accepted and published through the services, in seq order."""
    author = author or _user()
    ids = [_accept(stream, author, body).id for body in bodies]
    assert comments_publish_batch(stream_id=stream.id) == len(bodies)
    return list(Comment.objects.select_related("author", "stream").filter(id__in=ids).order_by("seq"))


def _log(stream: Stream) -> list[tuple[int, str, str | None]]:
    """The stream's event log: ``(seq, type, body)``."""
    return [
        (seq, event_type, payload.get("body"))
        for seq, event_type, payload in StreamEvent.objects.filter(stream=stream)
        .order_by("seq")
        .values_list("seq", "type", "payload")
    ]


# --- accept ----------------------------------------------------------------------------------------


def test_accept_writes_a_pending_comment_once_per_author_and_key() -> None:
    """A retry returns the first comment; the key reused for another body is refused; keys are per author."""
    stream, alice, bob = _stream(), _user(), _user()

    first, created = comment_accept(stream=stream, author_id=alice.pk, body="hi", idempotency_key="k")
    retry, again = comment_accept(stream=stream, author_id=alice.pk, body="hi", idempotency_key="k")
    with pytest.raises(IdempotencyKeyReused) as reused:
        comment_accept(stream=stream, author_id=alice.pk, body="other", idempotency_key="k")
    bobs, bob_created = comment_accept(stream=stream, author_id=bob.pk, body="hi", idempotency_key="k")

    assert (created, again, bob_created) == (True, False, True)
    assert retry.id == first.id == reused.value.comment.id
    assert bobs.id != first.id
    assert (first.status, first.seq) == (CommentStatus.PENDING, None)
    # the replays ran inside this test's transaction and left it usable (a savepoint took the failure)
    assert Comment.objects.filter(stream=stream).count() == 2
    assert not StreamEvent.objects.filter(stream=stream).exists()  # accepting publishes nothing


def test_accept_refuses_a_closed_stream_and_a_parent_not_published_on_this_stream() -> None:
    stream, elsewhere, author = _stream(), _stream(), _user()
    (parent,) = _published(stream, ["parent"])
    (foreign,) = _published(elsewhere, ["foreign"])
    pending = _accept(stream, author, "pending parent")

    with pytest.raises(StreamClosed):
        comment_accept(stream=_stream(closed_at=timezone.now()), author_id=author.pk, body="late")
    for bad in (pending.id, foreign.id, uuid.uuid4()):
        with pytest.raises(InvalidParent):
            comment_accept(stream=stream, author_id=author.pk, body="reply", parent_id=bad)
    reply = _accept(stream, author, "reply", parent_id=parent.id)

    assert reply.parent_id == parent.id
    assert Comment.objects.filter(author=author, body__in=["late", "reply"]).count() == 1


def test_accept_nudges_the_sequencer_after_commit_only_while_the_comment_is_pending(
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    """One nudge per new or still-pending comment, one per stream for a batch, none for a published replay."""
    stream, other, author = _stream(), _stream(), _user()
    with django_capture_on_commit_callbacks() as new:
        comment_accept(stream=stream, author_id=author.pk, body="x", idempotency_key="k")
    with django_capture_on_commit_callbacks() as pending_retry:
        comment_accept(stream=stream, author_id=author.pk, body="x", idempotency_key="k")
    comments_publish_batch(stream_id=stream.id)
    with django_capture_on_commit_callbacks() as published_retry:
        comment_accept(stream=stream, author_id=author.pk, body="x", idempotency_key="k")
    requests = [
        AcceptRequest(stream_id=s.id, slug=s.slug, author_id=author.pk, body=f"b{i}")
        for i, s in enumerate([stream, other, stream, other, stream])
    ]
    with django_capture_on_commit_callbacks() as batch:
        comments_accept_batch(requests=requests)

    assert (len(new), len(pending_retry), len(published_retry), len(batch)) == (1, 1, 0, 2)


@pytest.mark.parametrize("size", [1, 25, 100])
def test_a_batch_with_replies_and_replays_costs_the_same_statements_whatever_its_size(
    size: int,
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    """streams, parents, SAVEPOINT, INSERT ... RETURNING the rows that made it, the replayed keys, RELEASE: six."""
    stream, author = _stream(), _user()
    (parent,) = _published(stream, ["parent"])
    _accept(stream, author, "earlier", idempotency_key="earlier")
    requests = [
        AcceptRequest(stream_id=stream.id, slug=stream.slug, author_id=author.pk, body=f"c{i}", parent_id=parent.id)
        for i in range(size)
    ]
    requests.append(
        AcceptRequest(
            stream_id=stream.id, slug=stream.slug, author_id=author.pk, body="earlier", idempotency_key="earlier"
        )
    )

    with django_assert_num_queries(6):
        outcomes = comments_accept_batch(requests=requests)

    assert [o.created for o in outcomes] == [True] * size + [False]


def test_accepting_a_reply_or_a_replay_costs_a_fixed_few_statements(
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    """Inside a caller's transaction: SAVEPOINT, INSERT, RELEASE; a reply adds its parent's check, a
    replay the rollback to the savepoint and the read of the first comment (autocommit: one INSERT)."""
    stream, author = _stream(), _user()
    (parent,) = _published(stream, ["parent"])
    with django_assert_num_queries(3):
        _accept(stream, author, "new", idempotency_key="k")
    with django_assert_num_queries(4):
        _accept(stream, author, "reply", parent_id=parent.id)
    with django_assert_num_queries(5):
        comment_accept(stream=stream, author_id=author.pk, body="new", idempotency_key="k")


# --- publish ---------------------------------------------------------------------------------------


def test_batches_number_pending_comments_gaplessly_in_accept_order() -> None:
    """Batches of two: 2, 2, 1, then nothing; seq 1..5 in accept order, one derived event each."""
    stream, author = _stream(), _user()
    accepted = [_accept(stream, author, f"c{i}") for i in range(5)]

    claimed = [comments_publish_batch(stream_id=stream.id, limit=2) for _ in range(4)]

    assert claimed == [2, 2, 1, 0]
    rows = {c.id: c for c in Comment.objects.filter(stream=stream)}
    assert [rows[c.id].seq for c in accepted] == [1, 2, 3, 4, 5]
    assert {rows[c.id].status for c in accepted} == {CommentStatus.PUBLISHED}
    assert Stream.objects.get(id=stream.id).last_seq == 5
    events = list(StreamEvent.objects.filter(stream=stream).order_by("seq"))
    assert [(e.type, e.event_id, e.subject) for e in events] == [
        (COMMENT_CREATED, comment_event_id(c.id, COMMENT_CREATED), c.id) for c in accepted
    ]
    assert [e.payload for e in events] == [comment_as_dict(rows[c.id]) for c in accepted]


def test_a_comment_that_cannot_be_published_is_set_aside_with_its_own_task(settings: Settings) -> None:
    """The batch publishes the others gaplessly; the bad one waits for its own task in the outbox."""
    stream, author = _stream(), _user()
    settings.CHORUS_FAULT_INJECT = "comment_publish:poison"
    first, poison, last = (_accept(stream, author, body) for body in ("first", "poison", "last"))

    assert comments_publish_batch(stream_id=stream.id) == 3
    assert comments_publish_batch(stream_id=stream.id) == 0  # set aside: not in the batches any more

    rows = {c.id: c for c in Comment.objects.filter(stream=stream)}
    assert (rows[first.id].seq, rows[last.id].seq) == (1, 2)
    assert (rows[poison.id].status, rows[poison.id].publish_isolated) == (CommentStatus.PENDING, True)
    (task,) = OutboxMessage.objects.filter(task_name=PUBLISH_TASK, kwargs={"comment_id": str(poison.id)})
    assert task.done_at is None and task.dispatched_at is None  # the relay runs after commit

    # when: its own task runs once the cause is gone
    settings.CHORUS_FAULT_INJECT = ""
    event = comment_publish(comment_id=poison.id)

    assert event is not None and event.seq == 3
    assert Comment.objects.values_list("status", "publish_isolated").get(id=poison.id) == (
        CommentStatus.PUBLISHED,
        False,
    )


def test_publishing_one_comment_again_rebroadcasts_its_event_and_writes_nothing(
    published_events: PublishedEvents,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    """A redelivered task finds the comment published: the same frame goes out again, no new event."""
    stream, author = _stream(), _user()
    comment = _accept(stream, author, "once")
    with django_capture_on_commit_callbacks(execute=True):
        first = comment_publish(comment_id=comment.id)
    with django_capture_on_commit_callbacks(execute=True):
        again = comment_publish(comment_id=comment.id)

    assert first is not None and again is not None and again.id == first.id
    assert StreamEvent.objects.filter(stream=stream).count() == 1
    frames = published_events.wait_for(2, stream_id=stream.id)
    assert frames[0].frame == frames[1].frame
    assert (frames[0].seq, frames[0].event_type, frames[0].data["body"]) == (1, COMMENT_CREATED, "once")


def test_a_batch_is_broadcast_after_commit_as_frames_1_to_n_in_order(
    published_events: PublishedEvents,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    stream, author = _stream(), _user()
    bodies = [f"#{i}" for i in range(30)]
    for body in bodies:
        _accept(stream, author, body)

    with django_capture_on_commit_callbacks(execute=True):
        comments_publish_batch(stream_id=stream.id)
        published_events.settle()
        assert published_events.of(stream.id) == []  # not before the commit

    frames = published_events.wait_for(30, stream_id=stream.id)
    assert [f.seq for f in frames] == list(range(1, 31))
    assert [f.data["body"] for f in frames] == bodies
    assert {(f.event_type, f.epoch, f.data["status"]) for f in frames} == {(COMMENT_CREATED, 1, "published")}


# --- edit and delete ---------------------------------------------------------------------------------


def test_an_edit_needs_the_current_version_and_replaces_the_body_everywhere() -> None:
    """Version 1 -> 2 once; the same version again is a conflict naming the current one; the log
    carries the new body only, the old one stays as a revision."""
    stream, author = _stream(), _user()
    (comment,) = _published(stream, ["first draft"], author)

    edited = comment_edit(comment_id=comment.id, editor_id=author.pk, body="final", expected_version=1)
    with pytest.raises(VersionMismatch) as conflict:
        comment_edit(comment_id=comment.id, editor_id=author.pk, body="lost", expected_version=1)

    assert (edited.version, edited.body) == (2, "final")
    assert conflict.value.current == 2
    assert Comment.objects.values_list("body", "version").get(id=comment.id) == ("final", 2)
    assert _log(stream) == [(1, COMMENT_CREATED, "final"), (2, COMMENT_EDITED, "final")]
    assert comment_history(comment=edited) == [("original", "first draft", "superseded")]


def test_only_the_author_or_staff_edit_and_only_a_published_comment() -> None:
    stream, author, stranger, staff = _stream(), _user(), _user(), _user(is_staff=True)
    (comment,) = _published(stream, ["mine"], author)
    pending = _accept(stream, author, "not yet")

    with pytest.raises(CommentChangeForbidden):
        comment_edit(comment_id=comment.id, editor_id=stranger.pk, body="theirs", expected_version=1)
    with pytest.raises(CommentNotEditable):
        comment_edit(comment_id=pending.id, editor_id=author.pk, body="early", expected_version=1)
    with pytest.raises(CommentNotFound):
        comment_edit(comment_id=uuid.uuid4(), editor_id=author.pk, body="nothing", expected_version=1)
    moderated = comment_edit(comment_id=comment.id, editor_id=staff.pk, body="[edited]", expected_version=1)
    comment_delete(comment_id=comment.id)
    with pytest.raises(CommentNotFound):
        comment_edit(comment_id=comment.id, editor_id=author.pk, body="zombie", expected_version=3)

    assert moderated.body == "[edited]"
    assert CommentRevision.objects.filter(comment=comment).count() == 1


def test_a_delete_appends_one_event_and_leaves_no_body_in_the_log() -> None:
    stream, author, stranger = _stream(), _user(), _user()
    comment, _ = _published(stream, ["secret", "stays"], author)
    comment_edit(comment_id=comment.id, editor_id=author.pk, body="secret, edited", expected_version=1)

    with pytest.raises(CommentChangeForbidden):
        comment_delete(comment_id=comment.id, actor_id=stranger.pk)
    assert comment_delete(comment_id=comment.id, actor_id=author.pk) is True
    assert comment_delete(comment_id=comment.id, actor_id=author.pk) is False

    assert Comment.objects.values_list("status", "version").get(id=comment.id) == (CommentStatus.DELETED, 3)
    assert _log(stream) == [
        (1, COMMENT_CREATED, ""),
        (2, COMMENT_CREATED, "stays"),
        (3, COMMENT_EDITED, ""),
        (4, COMMENT_DELETED, ""),
    ]
    deleted = StreamEvent.objects.get(stream=stream, type=COMMENT_DELETED)
    assert deleted.event_id == comment_event_id(comment.id, COMMENT_DELETED)
    assert deleted.payload["status"] == "deleted"


# --- reads -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["limit=40", "after=0&limit=40&epoch=1", "tail=40"])
def test_the_comments_page_costs_the_same_queries_for_one_comment_or_forty(
    query: str,
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    """No query per comment (author, stream, parent) on the REST page, a page or a tail, uncached."""
    costs = []
    for count in (1, 40):
        stream = _stream()
        _published(stream, [f"c{i}" for i in range(count)])
        client = Client()
        with django_assert_num_queries(3) as captured:  # the stream, the page, the count of comments
            response = client.get(f"/api/v1/streams/{stream.slug}/comments?{query}")
        assert response.status_code == 200
        assert len(response.json()["results"]) == count
        costs.append([q["sql"].split(" FROM ")[-1][:40] for q in captured.captured_queries])
    assert costs[0] == costs[1]


def test_a_page_and_a_tail_read_every_comment_in_one_query(django_assert_num_queries: DjangoAssertNumQueries) -> None:
    stream = _stream()
    comments = _published(stream, [f"c{i}" for i in range(12)])
    comment_delete(comment_id=comments[3].id)

    with django_assert_num_queries(1):
        page = [comment_as_dict(c) for c in comment_page(stream_id=stream.id, after=2, limit=5)]
    with django_assert_num_queries(2):  # the position, then the comments (in this test's transaction)
        tail, epoch, head = comment_tail(stream_id=stream.id, count=3)
        tail_shown = [comment_as_dict(c) for c in tail]

    assert [c["seq"] for c in page] == [3, 5, 6, 7, 8]  # published only: 4 was deleted
    assert [c["seq"] for c in tail_shown] == [10, 11, 12]
    assert (epoch, head) == (1, 13)  # the delete's event moved the head


def test_pending_comments_are_reported_per_stream_the_longest_waiting_first() -> None:
    older, newer, author = _stream(), _stream(), _user()
    _accept(older, author, "a")
    _accept(newer, author, "b")
    _accept(older, author, "c")
    with transaction.atomic():
        Comment.objects.filter(stream=newer).update(publish_isolated=True)

    report = [(p.stream_id, p.pending, p.isolated) for p in comments_pending_by_stream()]
    assert [row for row in report if row[0] in (older.id, newer.id)] == [(older.id, 2, 0), (newer.id, 0, 1)]


# --- after a real commit ---------------------------------------------------------------------------------


def _committed_published(body: str) -> tuple[Stream, Comment]:
    """A comment published in its own committed transaction, with no task involved."""
    stream, author = _stream(), _user()
    comment = Comment.objects.create(stream=stream, author=author, body=body, idempotency_key="k")  # no nudge
    comments_publish_batch(stream_id=stream.id)
    return stream, comment


@pytest.mark.django_db(transaction=True)
def test_a_delete_is_published_after_its_commit_only(published_events: PublishedEvents) -> None:
    stream, comment = _committed_published("to delete")
    published_events.wait_for(1, stream_id=stream.id)

    with transaction.atomic():
        comment_delete(comment_id=comment.id)
        published_events.settle()
        assert len(published_events.of(stream.id)) == 1  # still only the comment's creation

    created, deleted = published_events.wait_for(2, stream_id=stream.id)
    assert (deleted.seq, deleted.event_type, deleted.data["body"]) == (2, COMMENT_DELETED, "")
    assert created.data["body"] == "to delete"  # frames already delivered are not recalled


class _Abort(Exception):
    pass


@pytest.mark.django_db(transaction=True)
def test_nothing_is_published_and_no_number_is_used_when_the_transaction_rolls_back(
    published_events: PublishedEvents,
) -> None:
    stream, comment = _committed_published("kept")
    published_events.wait_for(1, stream_id=stream.id)

    with pytest.raises(_Abort), transaction.atomic():
        comment_delete(comment_id=comment.id)
        raise _Abort
    published_events.settle()

    assert len(published_events.of(stream.id)) == 1
    assert Comment.objects.values_list("status", flat=True).get(id=comment.id) == CommentStatus.PUBLISHED
    # the rolled-back event took its sequence number back with it
    comment_delete(comment_id=comment.id)
    assert published_events.wait_for(2, stream_id=stream.id)[1].seq == 2
