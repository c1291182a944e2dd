"""The internal API closes and reopens streams and deletes comments in bulk; readers never see a deleted one."""

import uuid

import httpx
import pytest
from django.test import Client

from comments.models import Comment, CommentStatus
from realtime.models import Stream, StreamEvent
from tests.conftest import ApiUser, Stack
from tests.gateway.test_internal_api import SERVICE, internal_token  # noqa: F401 - the fixture
from tests.support.api import post_comment, wait_published
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_closed_stream_refuses_comments_until_reopened(
    live: Stack,
    api_user: ApiUser,
    stream: Stream,
    http: httpx.Client,
    internal_token: str,  # noqa: F811
) -> None:
    """Close: 409 for new comments and a stream.closed event; reopen: comments are accepted again."""
    watcher = WsClient(f"{live.nodes[0].ws}/ws/streams/{stream.slug}/")
    client = Client()
    closed = client.post(f"/internal/streams/{stream.slug}/close", **SERVICE)
    assert closed.status_code == 200 and closed.json()["closed"] is True
    assert client.post(f"/internal/streams/{stream.slug}/close", **SERVICE).status_code == 200  # idempotent
    assert StreamEvent.objects.filter(stream=stream, type="stream.closed").count() == 1
    watcher.wait_for(lambda frames: any(f.get("event") == "stream.closed" for f in frames), timeout=15, what="event")

    refused = post_comment(http, live.nodes[1].http, stream.slug, api_user.headers, "too late")
    assert refused.status_code == 409 and refused.json()["code"] == "stream_closed"
    assert not Comment.objects.filter(stream=stream).exists()

    reopened = client.post("/internal/streams", {"slug": stream.slug, "title": "again"}, "application/json", **SERVICE)
    assert reopened.status_code == 201 and reopened.json()["closed"] is False
    assert post_comment(http, live.nodes[1].http, stream.slug, api_user.headers, "welcome back").status_code == 202
    assert client.post("/internal/streams/no-such-stream/close", **SERVICE).status_code == 404
    watcher.close()


def test_bulk_delete_hides_comments_from_every_reader_once_it_returns(
    live: Stack,
    api_user: ApiUser,
    stream: Stream,
    http: httpx.Client,
    internal_token: str,  # noqa: F811
) -> None:
    """After the bulk delete answers, no page on either node (cached or not) shows the deleted comments."""
    ids = [
        post_comment(http, live.nodes[0].http, stream.slug, api_user.headers, f"c{i}").json()["id"] for i in range(4)
    ]
    wait_published(ids)
    pages = [f"{node.http}/api/v1/streams/{stream.slug}/comments" for node in live.nodes]
    for url in pages:  # warm the page cache on both nodes
        assert len(http.get(url).json()["results"]) == 4

    missing = str(uuid.uuid4())
    response = Client().post(
        "/internal/moderation/bulk-delete", {"comment_ids": [ids[0], ids[2], missing]}, "application/json", **SERVICE
    )
    assert response.status_code == 200
    assert response.json() == {"deleted": [ids[0], ids[2]], "unchanged": [missing]}

    for url in pages:
        shown = [c["id"] for c in http.get(url).json()["results"]]
        assert shown == [ids[1], ids[3]]
        assert http.get(f"{url.split('/api/')[0]}/api/v1/comments/{ids[0]}").json()["status"] == CommentStatus.DELETED
    assert StreamEvent.objects.filter(stream=stream, type="comment.deleted").count() == 2
    again = Client().post("/internal/moderation/bulk-delete", {"comment_ids": [ids[0]]}, "application/json", **SERVICE)
    assert again.json() == {"deleted": [], "unchanged": [ids[0]]}


@pytest.mark.parametrize("body", [{}, {"comment_ids": []}, {"comment_ids": ["nope"]}, {"comment_ids": "x"}])
def test_bulk_delete_bad_input_is_a_400_naming_the_field(internal_token: str, transactional_db: None, body) -> None:  # noqa: F811
    response = Client().post("/internal/moderation/bulk-delete", body, "application/json", **SERVICE)
    assert response.status_code == 400 and "comment_ids" in response.json()["fields"]


def test_admin_closes_streams_and_pins_them_hot(admin_client: Client, stream: Stream) -> None:
    """The stream admin's actions close/reopen a stream and pin it hot or cold."""
    from reactions.hot import hot_streams_list

    url = "/admin/realtime/stream/"
    admin_client.post(url, {"action": "close_selected", "_selected_action": [stream.id]})
    stream.refresh_from_db()
    assert stream.closed_at is not None
    admin_client.post(url, {"action": "reopen_selected", "_selected_action": [stream.id]})
    stream.refresh_from_db()
    assert stream.closed_at is None
    admin_client.post(url, {"action": "pin_hot", "_selected_action": [stream.id]})
    assert [(s.stream_id, s.pinned) for s in hot_streams_list() if s.stream_id == stream.id] == [(stream.id, "hot")]
    admin_client.post(url, {"action": "unpin", "_selected_action": [stream.id]})
    assert not [s for s in hot_streams_list() if s.stream_id == stream.id and s.pinned]
