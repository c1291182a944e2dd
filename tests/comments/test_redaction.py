"""Deleted and replaced text leaves every read path once the delete or edit returns.

REST (detail, pages on both nodes, cached or not), WebSocket replay (``?after=0``) and resync all
read the event log, so the log's earlier payloads of the comment must no longer carry the text.
Only the moderator view (``comment_history``, the admin) keeps earlier bodies.
"""

import json
import uuid

import httpx
import pytest
from django.test import Client

from comments.models import Comment
from comments.replication import ReplicatedEdit
from comments.selectors import comment_history
from comments.services import comment_replicated_edit_apply
from realtime.models import Stream, StreamEvent
from tests.conftest import ApiUser, Stack
from tests.gateway.test_internal_api import SERVICE, internal_token  # noqa: F401 - the fixture
from tests.support.api import post_comment, wait_published
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)


def _secret() -> str:
    return f"secret-{uuid.uuid4().hex}"


def _posted(live, http, stream, headers, body: str) -> str:
    response = post_comment(http, live.nodes[0].http, stream.slug, headers, body)
    assert response.status_code == 202, response.text
    comment_id = response.json()["id"]
    wait_published([comment_id])
    return comment_id


def _warm_pages(live, http: httpx.Client, slug: str) -> list[str]:
    """Read the stream's page on both nodes, so it is cached before the write."""
    pages = [f"{node.http}/api/v1/streams/{slug}/comments" for node in live.nodes]
    for url in pages:
        assert http.get(url).status_code == 200
    return pages


def _replayed(live, slug: str, head: int) -> str:
    """Everything a new socket gets with ``?after=0``, then again after ``resync`` from 0, as text."""
    client = WsClient(f"{live.nodes[1].ws}/ws/streams/{slug}/?after=0")
    try:
        client.wait_for_seq(head)
        client.send({"type": "resync", "after": 0})
        client.wait_for(lambda frames: len([f for f in frames if f.get("seq") == head]) == 2, timeout=15, what="resync")
        return json.dumps(client.frames)
    finally:
        client.close()


def _nowhere(live, http: httpx.Client, slug: str, comment_id: str, text: str, head: int) -> None:
    """No read path of either node serves ``text``: detail, page (cached or not), replay, resync."""
    for node in live.nodes:
        assert text not in http.get(f"{node.http}/api/v1/comments/{comment_id}").text
        assert text not in http.get(f"{node.http}/api/v1/streams/{slug}/comments").text
    assert text not in _replayed(live, slug, head)


def test_deleted_text_is_gone_from_rest_replay_and_resync(
    live: Stack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """After DELETE returns 204 no page, detail, replay or resync carries the deleted body."""
    secret = _secret()
    comment_id = _posted(live, http, stream, api_user.headers, secret)
    watcher = WsClient(f"{live.nodes[0].ws}/ws/streams/{stream.slug}/?after=0")
    watcher.wait_for_seq(1)
    pages = _warm_pages(live, http, stream.slug)
    assert secret in http.get(pages[0]).text

    # when
    deleted = http.delete(f"{live.nodes[0].http}/api/v1/comments/{comment_id}", headers=api_user.headers)
    assert deleted.status_code == 204

    # then
    _nowhere(live, http, stream.slug, comment_id, secret, head=2)
    live_event = next(e for e in watcher.wait_for_seq(2) if e["seq"] == 2)
    assert live_event["event"] == "comment.deleted" and live_event["data"]["body"] == ""
    watcher.close()


def test_an_edits_previous_text_is_gone_but_kept_for_moderators(
    live: Stack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """After PATCH returns, only the new body is served; the moderator history still has the old one."""
    first, second, third = _secret(), _secret(), _secret()
    comment_id = _posted(live, http, stream, api_user.headers, first)
    _warm_pages(live, http, stream.slug)
    url = f"{live.nodes[0].http}/api/v1/comments/{comment_id}"

    # when: two edits
    for version, body in ((1, second), (2, third)):
        edited = http.patch(url, json={"body": body}, headers={**api_user.headers, "If-Match": f'"{version}"'})
        assert edited.status_code == 200, edited.text

    # then: the first two bodies are gone, the current one is everywhere
    _nowhere(live, http, stream.slug, comment_id, first, head=3)
    _nowhere(live, http, stream.slug, comment_id, second, head=3)
    replay = _replayed(live, stream.slug, head=3)
    assert third in replay
    payloads = list(StreamEvent.objects.filter(stream=stream).order_by("seq").values_list("type", "payload"))
    assert [(t, p["body"], p["version"]) for t, p in payloads] == [
        ("comment.created", third, 1),
        ("comment.edited", third, 2),
        ("comment.edited", third, 3),
    ]
    comment = Comment.objects.get(id=comment_id)
    assert sorted(body for _, body, _ in comment_history(comment=comment)) == sorted([first, second])


def test_bulk_delete_leaves_no_text_in_the_log(
    live: Stack,
    api_user: ApiUser,
    stream: Stream,
    http: httpx.Client,
    internal_token: str,  # noqa: F811
) -> None:
    """Comments removed by /internal/moderation/bulk-delete are not replayed either."""
    secrets = [_secret() for _ in range(3)]
    ids = [_posted(live, http, stream, api_user.headers, secret) for secret in secrets]
    _warm_pages(live, http, stream.slug)

    response = Client().post(
        "/internal/moderation/bulk-delete", {"comment_ids": [ids[0], ids[2]]}, "application/json", **SERVICE
    )
    assert response.status_code == 200

    for index in (0, 2):
        _nowhere(live, http, stream.slug, ids[index], secrets[index], head=5)
    assert secrets[1] in _replayed(live, stream.slug, head=5)


def test_a_winning_replicated_edit_redacts_the_earlier_body(
    live: Stack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """An edit from another region that replaces the body redacts it from the log like a local edit."""
    original, remote = _secret(), _secret()
    comment_id = _posted(live, http, stream, api_user.headers, original)

    changed = comment_replicated_edit_apply(
        edit=ReplicatedEdit(comment_id=comment_id, replica="zz-remote", vector={"zz-remote": 1}, body=remote)
    )

    assert changed
    replay = _replayed(live, stream.slug, head=2)
    assert original not in replay and remote in replay
    assert original not in http.get(f"{live.nodes[0].http}/api/v1/streams/{stream.slug}/comments").text
