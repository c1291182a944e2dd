"""A user's reactions on a comment: one per kind, idempotent PUT/DELETE, events in the log."""

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from pytest_django import DjangoAssertNumQueries

from comments.models import Comment, CommentStatus
from reactions.models import CommentReaction
from reactions.selectors import comment_reaction_set, stream_latest_comment_reactions
from reactions.services.comment_reactions import comment_reaction_add, comment_reaction_remove
from realtime.models import Stream, StreamEvent
from tests.conftest import ApiUser, Stack
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _published_comment(stream, author) -> Comment:
    return Comment.objects.create(
        stream=stream, author=author, body="hi", status=CommentStatus.PUBLISHED, idempotency_key=str(uuid.uuid4())
    )


def test_put_twice_is_one_reaction_and_delete_of_absent_is_204(
    live: Stack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """PUT, PUT again, DELETE, DELETE again: one add event, one remove event, status codes as documented."""
    comment = _published_comment(stream, api_user.user)
    url = f"{live.nodes[0].http}/api/v1/comments/{comment.id}/reactions/heart"
    first = http.put(url, headers=api_user.headers)
    again = http.put(url.replace(live.nodes[0].http, live.nodes[1].http), headers=api_user.headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == {"comment": str(comment.id), "kind": "heart", "reacted": True, "count": 1}
    listing = http.get(f"{live.nodes[0].http}/api/v1/comments/{comment.id}/reactions", headers=api_user.headers)
    assert listing.json() == {"counts": {"heart": 1}, "mine": ["heart"]}

    assert http.delete(url, headers=api_user.headers).status_code == 204
    assert http.delete(url, headers=api_user.headers).status_code == 204
    types = list(StreamEvent.objects.filter(stream=stream).order_by("seq").values_list("type", "payload"))
    assert [t for t, _ in types] == ["reaction.added", "reaction.removed"]
    assert types[1][1] == {"comment": str(comment.id), "kind": "heart", "user": api_user.user.username, "count": 0}


def test_concurrent_puts_make_one_reaction(live: Stack, api_user: ApiUser, stream: Stream) -> None:
    """20 concurrent PUTs of the same reaction on two nodes leave one live reaction and one event."""
    comment = _published_comment(stream, api_user.user)

    def put(i: int) -> int:
        with httpx.Client(timeout=15) as client:
            url = f"{live.nodes[i % 2].http}/api/v1/comments/{comment.id}/reactions/fire"
            return client.put(url, headers=api_user.headers).status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(put, range(20)))
    assert statuses.count(201) == 1 and statuses.count(200) == 19
    assert CommentReaction.objects.filter(comment=comment, removed_at__isnull=True).count() == 1
    assert StreamEvent.objects.filter(stream=stream, type="reaction.added").count() == 1


def test_bad_comment_reactions_are_4xx(live: Stack, api_user: ApiUser, stream: Stream, http: httpx.Client) -> None:
    """Unknown kind is a 400 naming 'kind'; a missing or pending comment is 404; anonymous is 401."""
    comment = _published_comment(stream, api_user.user)
    base = f"{live.nodes[0].http}/api/v1/comments"
    bad_kind = http.put(f"{base}/{comment.id}/reactions/meh", headers=api_user.headers)
    assert bad_kind.status_code == 400 and "kind" in bad_kind.json()["fields"]
    assert http.put(f"{base}/{uuid.uuid4()}/reactions/heart", headers=api_user.headers).status_code == 404
    assert http.put(f"{base}/not-a-uuid/reactions/heart", headers=api_user.headers).status_code == 404
    pending = Comment.objects.create(stream=stream, author=api_user.user, body="p", idempotency_key="p")
    assert http.put(f"{base}/{pending.id}/reactions/heart", headers=api_user.headers).status_code == 404
    assert http.put(f"{base}/{comment.id}/reactions/heart").status_code == 401
    assert not CommentReaction.objects.exists()


def test_services_are_idempotent_for_saga_compensation(stream: Stream) -> None:
    """Remove accepts "never happened" and "already undone"; re-adding after a remove works (OR-set)."""
    user = UserFactory.create()
    comment = _published_comment(stream, user)
    missing = uuid.uuid4()
    assert not comment_reaction_remove(comment_id=missing, user_id=user.pk, kind="heart").changed
    assert not comment_reaction_remove(comment_id=comment.id, user_id=user.pk, kind="heart").changed
    assert comment_reaction_add(comment_id=comment.id, user_id=user.pk, kind="heart").changed
    assert not comment_reaction_add(comment_id=comment.id, user_id=user.pk, kind="heart").changed
    assert comment_reaction_remove(comment_id=comment.id, user_id=user.pk, kind="heart").changed
    assert not comment_reaction_remove(comment_id=comment.id, user_id=user.pk, kind="heart").changed
    assert comment_reaction_add(comment_id=comment.id, user_id=user.pk, kind="heart").count == 1
    assert comment_reaction_set(comment_id=comment.id, user_id=user.pk).elements == {"heart"}
    assert StreamEvent.objects.filter(stream=stream).count() == 3


def test_concurrent_adds_by_different_users_count_up_in_sequence_order(live: Stack, stream: Stream) -> None:
    """16 users PUT the same kind at once on two nodes: the events' counts, in seq order, are 1..16."""
    from rest_framework.authtoken.models import Token

    users = [UserFactory.create() for _ in range(16)]
    tokens = [Token.objects.create(user=user).key for user in users]
    comment = _published_comment(stream, users[0])
    start = threading.Barrier(len(users))

    def put(i: int) -> int:
        with httpx.Client(timeout=15) as client:
            url = f"{live.nodes[i % 2].http}/api/v1/comments/{comment.id}/reactions/heart"
            start.wait(timeout=15)
            return client.put(url, headers={"Authorization": f"Token {tokens[i]}"}).status_code

    with ThreadPoolExecutor(max_workers=len(users)) as pool:
        assert list(pool.map(put, range(len(users)))) == [201] * len(users)
    counts = [
        p["count"] for p in StreamEvent.objects.filter(stream=stream).order_by("seq").values_list("payload", flat=True)
    ]
    assert counts == list(range(1, len(users) + 1))


def test_the_live_page_gets_the_latest_comments_reactions_in_two_queries(
    stream: Stream, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    """Counts per kind and the viewer's own kinds, for the latest comments only; removed ones not."""
    alice, bob = UserFactory.create(), UserFactory.create()
    old, recent = _published_comment(stream, alice), _published_comment(stream, alice)
    Comment.objects.filter(id=old.id).update(seq=1)
    Comment.objects.filter(id=recent.id).update(seq=2)
    comment_reaction_add(comment_id=old.id, user_id=bob.pk, kind="heart")
    comment_reaction_add(comment_id=recent.id, user_id=bob.pk, kind="heart")
    comment_reaction_add(comment_id=recent.id, user_id=alice.pk, kind="heart")
    comment_reaction_add(comment_id=recent.id, user_id=alice.pk, kind="fire")
    comment_reaction_remove(comment_id=recent.id, user_id=alice.pk, kind="fire")

    with django_assert_num_queries(2):
        found = stream_latest_comment_reactions(stream_id=stream.id, user_id=bob.pk, limit=1)
    assert found == {str(recent.id): {"counts": {"heart": 2}, "mine": ["heart"]}}
    with django_assert_num_queries(1):
        anonymous = stream_latest_comment_reactions(stream_id=stream.id, user_id=None, limit=5)
    assert anonymous == {
        str(old.id): {"counts": {"heart": 1}, "mine": []},
        str(recent.id): {"counts": {"heart": 2}, "mine": []},
    }
