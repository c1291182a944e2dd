"""Comment edits and deletes: If-Match optimistic locking, author-or-staff, idempotent delete."""

import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from comments.models import Comment, CommentStatus
from comments.selectors import comment_history
from comments.services import comment_delete, comment_publish
from realtime.models import Stream, StreamEvent
from tests.conftest import ApiUser, Stack
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _published(stream, author, body="first") -> Comment:
    return Comment.objects.create(
        stream=stream, author=author, body=body, status=CommentStatus.PUBLISHED, idempotency_key=str(uuid.uuid4())
    )


def test_patch_needs_a_fresh_if_match(live: Stack, api_user: ApiUser, stream: Stream, http: httpx.Client) -> None:
    """No If-Match is 428, a stale one 412 (with the current ETag), the right one 200 with a new ETag."""
    comment = _published(stream, api_user.user)
    url = f"{live.nodes[0].http}/api/v1/comments/{comment.id}"
    etag = http.get(url).headers["ETag"]
    assert etag == '"1"'
    assert http.patch(url, json={"body": "x"}, headers=api_user.headers).status_code == 428
    bad = http.patch(url, json={"body": "x"}, headers={**api_user.headers, "If-Match": "yesterday"})
    assert bad.status_code == 400 and "If-Match" in bad.json()["fields"]

    edited = http.patch(url, json={"body": "second"}, headers={**api_user.headers, "If-Match": etag})
    assert edited.status_code == 200 and edited.json()["body"] == "second" and edited.headers["ETag"] == '"2"'
    stale = http.patch(url, json={"body": "third"}, headers={**api_user.headers, "If-Match": etag})
    assert stale.status_code == 412 and stale.json()["code"] == "precondition_failed" and stale.headers["ETag"] == '"2"'

    comment.refresh_from_db()
    assert comment_history(comment=comment) == [("original", "first", "superseded")]
    event = StreamEvent.objects.get(stream=stream, type="comment.edited")
    assert event.payload["body"] == "second" and event.payload["version"] == 2


@pytest.mark.parametrize("value", [b'"\xb2"', b"\xb9", b'W/"\xb3"'])
def test_an_if_match_of_other_digits_is_400_not_500(
    live: Stack, api_user: ApiUser, stream: Stream, http: httpx.Client, value
) -> None:
    """'²' (latin-1 0xb2) is a digit to str.isdigit but not to int(): still a 400 naming If-Match."""
    comment = _published(stream, api_user.user)
    url = f"{live.nodes[0].http}/api/v1/comments/{comment.id}"
    response = http.patch(url, json={"body": "x"}, headers={**api_user.headers, "If-Match": value})
    assert response.status_code == 400, response.text
    assert "If-Match" in response.json()["fields"]


def test_concurrent_patches_with_one_version_let_exactly_one_win(
    live: Stack, api_user: ApiUser, stream: Stream
) -> None:
    """10 concurrent PATCHes with the same If-Match on two nodes: one 200, nine 412."""
    comment = _published(stream, api_user.user)

    def patch(i: int) -> int:
        with httpx.Client(timeout=15) as client:
            url = f"{live.nodes[i % 2].http}/api/v1/comments/{comment.id}"
            headers = {**api_user.headers, "If-Match": '"1"'}
            return client.patch(url, json={"body": f"edit {i}"}, headers=headers).status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(patch, range(10)))
    assert sorted(statuses) == [200] + [412] * 9
    comment.refresh_from_db()
    assert comment.version == 2 and StreamEvent.objects.filter(type="comment.edited").count() == 1


def test_only_author_or_staff_may_edit_or_delete(
    live: Stack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """Another user gets 403 for PATCH and DELETE; staff may do both."""
    from rest_framework.authtoken.models import Token

    comment = _published(stream, UserFactory.create())
    url = f"{live.nodes[0].http}/api/v1/comments/{comment.id}"
    headers = {**api_user.headers, "If-Match": '"1"'}
    assert http.patch(url, json={"body": "mine now"}, headers=headers).status_code == 403
    assert http.delete(url, headers=api_user.headers).status_code == 403
    staff = UserFactory.create(is_staff=True)
    staff_headers = {"Authorization": f"Token {Token.objects.create(user=staff).key}"}
    assert http.patch(url, json={"body": "moderated"}, headers={**staff_headers, "If-Match": '"1"'}).status_code == 200
    assert http.delete(url, headers=staff_headers).status_code == 204


def test_delete_is_idempotent_and_emits_one_event(
    live: Stack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """DELETE twice: both 204, one comment.deleted event; the comment reads as deleted with no body."""
    comment = _published(stream, api_user.user)
    url = f"{live.nodes[0].http}/api/v1/comments/{comment.id}"
    assert http.delete(url, headers=api_user.headers).status_code == 204
    assert http.delete(url, headers=api_user.headers).status_code == 204
    assert (
        http.delete(f"{live.nodes[0].http}/api/v1/comments/{uuid.uuid4()}", headers=api_user.headers).status_code == 204
    )
    shown = http.get(url).json()
    assert shown["status"] == "deleted" and shown["body"] == ""
    assert StreamEvent.objects.filter(stream=stream, type="comment.deleted").count() == 1
    assert http.patch(url, json={"body": "zombie"}, headers={**api_user.headers, "If-Match": '"2"'}).status_code == 404


def test_deleting_a_never_published_comment_is_harmless(stream: Stream) -> None:
    """A pending comment deleted (a saga compensation) is never published and leaves no event."""
    author = UserFactory.create()
    pending = Comment.objects.create(stream=stream, author=author, body="p", idempotency_key="k")
    assert comment_delete(comment_id=pending.id) is True
    assert comment_delete(comment_id=pending.id) is False
    assert comment_delete(comment_id=uuid.uuid4()) is False
    assert comment_publish(comment_id=pending.id) is None
    assert not StreamEvent.objects.filter(stream=stream).exists()
