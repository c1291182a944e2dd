"""Service tier of reactions: reactions on comments (toggle, counts, events) and live taps
(counted in Redis, broadcast as snapshots, flushed to PostgreSQL by the CRDT merge).

Services are called directly on the real PostgreSQL and Redis, with no node, worker or beat: the
flush a beat would run is called here. Each test's database work is rolled back at its end.
"""

import time
import uuid
from typing import Any

import pytest
from django.contrib.auth.models import User
from pytest_django import DjangoCaptureOnCommitCallbacks, Settings

from comments.models import Comment, CommentStatus
from comments.services import comment_delete
from reactions.models import CommentReaction, TapCounter
from reactions.redis_counters import counter_state_read, counts_of, redis_client, shard_count, taps_key
from reactions.selectors import comment_reaction_counts, comment_reaction_set
from reactions.services.comment_reactions import (
    REACTION_ADDED,
    REACTION_REMOVED,
    CommentNotReactable,
    comment_reaction_add,
    comment_reaction_remove,
)
from reactions.services.counter_flush import (
    counter_state_from_db,
    counter_state_merge_into_db,
    reaction_taps_flush,
)
from reactions.services.taps import TapLimited, UnknownKind, reaction_tap
from realtime.models import Stream, StreamEvent
from tests.factories import StreamFactory, UserFactory
from tests.support.published import PublishedEvents

pytestmark = [pytest.mark.services, pytest.mark.django_db]


def _user(**fields: Any) -> User:
    return UserFactory.create(password=None, **fields)


def _stream() -> Stream:
    return StreamFactory.create(slug=f"r-{uuid.uuid4().hex[:10]}")


def _comment(stream: Stream, author: User, status: str = CommentStatus.PUBLISHED) -> Comment:
    return Comment.objects.create(
        stream=stream, author=author, body="hi", status=status, idempotency_key=str(uuid.uuid4())
    )


# --- reactions on comments -------------------------------------------------------------------------------


def test_a_reaction_is_one_per_user_and_kind_and_each_change_is_logged_with_the_count() -> None:
    stream, alice, bob = _stream(), _user(), _user()
    comment = _comment(stream, alice)

    steps = [
        comment_reaction_add(comment_id=comment.id, user_id=alice.pk, kind="heart"),
        comment_reaction_add(comment_id=comment.id, user_id=alice.pk, kind="heart"),  # already there
        comment_reaction_add(comment_id=comment.id, user_id=bob.pk, kind="heart"),
        comment_reaction_remove(comment_id=comment.id, user_id=alice.pk, kind="heart"),
        comment_reaction_remove(comment_id=comment.id, user_id=alice.pk, kind="heart"),  # already gone
        comment_reaction_add(comment_id=comment.id, user_id=alice.pk, kind="heart"),  # back: a new add
    ]

    assert [(s.changed, s.count) for s in steps] == [(True, 1), (False, 1), (True, 2), (True, 1), (False, 1), (True, 2)]
    log = StreamEvent.objects.filter(stream=stream).order_by("seq").values_list("type", "payload")
    assert [(t, p["user"], p["count"]) for t, p in log] == [
        (REACTION_ADDED, alice.username, 1),
        (REACTION_ADDED, bob.username, 2),
        (REACTION_REMOVED, alice.username, 1),
        (REACTION_ADDED, alice.username, 2),
    ]
    assert comment_reaction_counts(comment_id=comment.id) == {"heart": 2}
    mine = comment_reaction_set(comment_id=comment.id, user_id=alice.pk)
    assert mine.elements == {"heart"}
    assert CommentReaction.objects.filter(comment=comment, user=alice).count() == 2  # one tombstoned add


def test_only_a_published_comment_takes_reactions_and_only_known_kinds() -> None:
    stream, author = _stream(), _user()
    published, pending, deleted = (
        _comment(stream, author),
        _comment(stream, author, "pending"),
        _comment(stream, author),
    )
    comment_delete(comment_id=deleted.id)

    for comment_id in (pending.id, deleted.id, uuid.uuid4()):
        with pytest.raises(CommentNotReactable):
            comment_reaction_add(comment_id=comment_id, user_id=author.pk, kind="heart")
    with pytest.raises(UnknownKind):
        comment_reaction_add(comment_id=published.id, user_id=author.pk, kind="thumbs-sideways")
    with pytest.raises(UnknownKind):
        comment_reaction_remove(comment_id=published.id, user_id=author.pk, kind="thumbs-sideways")

    assert not CommentReaction.objects.filter(comment__stream=stream).exists()


def test_a_reaction_is_broadcast_after_commit_and_a_no_op_is_not(
    published_events: PublishedEvents, django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks
) -> None:
    stream, author = _stream(), _user()
    comment = _comment(stream, author)

    with django_capture_on_commit_callbacks(execute=True):
        comment_reaction_add(comment_id=comment.id, user_id=author.pk, kind="fire")
        published_events.settle()
        assert published_events.of(stream.id) == []
    with django_capture_on_commit_callbacks(execute=True) as no_op:
        comment_reaction_add(comment_id=comment.id, user_id=author.pk, kind="fire")
    published_events.settle()

    assert no_op == []
    (added,) = published_events.of(stream.id)
    assert (added.seq, added.event_type) == (1, REACTION_ADDED)
    assert added.data == {"comment": str(comment.id), "kind": "fire", "user": author.username, "count": 1}


# --- live taps -------------------------------------------------------------------------------------------


def test_a_tap_is_counted_at_once_and_broadcast_as_a_newer_snapshot(published_events: PublishedEvents) -> None:
    stream, user = _stream(), _user()

    results = [reaction_tap(stream_id=stream.id, user_id=user.pk, kind=kind) for kind in ("heart", "heart", "fire")]

    assert [(r.hot, r.counts) for r in results] == [
        (False, {"heart": 1}),
        (False, {"heart": 2}),
        (False, {"fire": 1, "heart": 2}),
    ]
    snapshots = published_events.wait_for(3, stream_id=stream.id, kind="snapshot")
    assert [s.frame["counts"] for s in snapshots if s.frame] == [r.counts for r in results]
    versions = [s.version or 0 for s in snapshots]
    assert versions[0] > 0 and versions == sorted(set(versions))  # rising: a client keeps the newest
    assert not StreamEvent.objects.filter(stream=stream).exists()  # taps never touch the event log
    with pytest.raises(UnknownKind):
        reaction_tap(stream_id=stream.id, user_id=user.pk, kind="boo")


def test_taps_over_the_users_limit_are_refused_and_not_counted(settings: Settings) -> None:
    stream, user = _stream(), _user()
    admitted, deadline = 0, time.monotonic() + 10
    with pytest.raises(TapLimited) as limited:  # a one-second window: refused within the first few
        while time.monotonic() < deadline:
            reaction_tap(stream_id=stream.id, user_id=user.pk, kind="clap")
            admitted += 1

    assert admitted >= settings.CHORUS_REACTION_TAPS_PER_SECOND
    assert limited.value.retry_after > 0
    assert counts_of(counter_state_read(stream_id=stream.id)) == {"clap": admitted}


def test_a_flush_copies_the_counts_to_postgresql_and_repeating_it_changes_nothing() -> None:
    """The PN-counter merge: the same or an older state merged again raises no row."""
    stream, user = _stream(), _user()
    for kind in ("heart", "heart", "wow"):
        reaction_tap(stream_id=stream.id, user_id=user.pk, kind=kind)
    state = counter_state_read(stream_id=stream.id)

    assert reaction_taps_flush() >= 1
    rows = list(TapCounter.objects.filter(stream=stream).values_list("kind", "count", "updated_at"))
    reaction_taps_flush()  # nothing tapped since
    assert counter_state_merge_into_db(stream_id=stream.id, state=state) == 0  # a duplicated flush

    reaction_tap(stream_id=stream.id, user_id=user.pk, kind="heart")
    assert counter_state_merge_into_db(stream_id=stream.id, state=state) == 0  # a stale one
    assert list(TapCounter.objects.filter(stream=stream).values_list("kind", "count", "updated_at")) == rows
    assert counts_of(counter_state_from_db(stream_id=stream.id)) == {"heart": 2, "wow": 1}


def test_counts_redis_lost_are_restored_from_postgresql_by_the_next_flush(published_events: PublishedEvents) -> None:
    stream, user = _stream(), _user()
    for _ in range(3):
        reaction_tap(stream_id=stream.id, user_id=user.pk, kind="laugh")
    reaction_taps_flush()

    # given: Redis loses the stream's counters (a restart without persistence), and a tap follows
    redis_client().delete(*(taps_key(stream.id, shard) for shard in range(shard_count())))
    assert reaction_tap(stream_id=stream.id, user_id=user.pk, kind="laugh").counts == {"laugh": 1}
    published_events.wait_for(4, stream_id=stream.id, kind="snapshot")

    # when
    reaction_taps_flush()

    # then: the whole count is back in Redis and in PostgreSQL, and sockets are told
    assert counts_of(counter_state_read(stream_id=stream.id)) == {"laugh": 4}
    assert counts_of(counter_state_from_db(stream_id=stream.id)) == {"laugh": 4}
    restored = published_events.wait_for(5, stream_id=stream.id, kind="snapshot")[-1]
    assert restored.frame is not None and restored.frame["counts"] == {"laugh": 4}
