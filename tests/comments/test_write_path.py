"""The comment write path over real HTTP: idempotency, gapless sequencing, fan-out to both nodes."""

import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from comments.models import Comment
from realtime.models import Stream, StreamEvent
from tests.conftest import ApiUser, Stack
from tests.support.api import comment_seqs, post_comment, wait_published
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)


def test_concurrent_posts_with_one_idempotency_key_make_one_comment(
    live: Stack, api_user: ApiUser, stream: Stream
) -> None:
    """50 concurrent POSTs with the same key all answer with the same id; one comment exists."""
    key = f"key-{uuid.uuid4()}"
    nodes = [node.http for node in live.nodes]

    def post(i: int) -> httpx.Response:
        with httpx.Client(timeout=30) as client:
            return post_comment(client, nodes[i % 2], stream.slug, api_user.headers, "only once", key)

    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(pool.map(post, range(50)))

    assert {r.status_code for r in responses} == {202}
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    wait_published(ids)
    assert Comment.objects.filter(stream=stream).count() == 1
    assert StreamEvent.objects.filter(stream=stream).count() == 1


def test_same_key_different_body_is_refused(live: Stack, api_user: ApiUser, stream: Stream, http: httpx.Client) -> None:
    """A key reused for a different request is a 422 that names the header; nothing new is written."""
    base = live.nodes[0].http
    first = post_comment(http, base, stream.slug, api_user.headers, "first", "k-1")
    second = post_comment(http, base, stream.slug, api_user.headers, "second", "k-1")
    assert first.status_code == 202
    assert second.status_code == 422
    assert "Idempotency-Key" in second.json()["fields"]
    assert Comment.objects.filter(stream=stream).count() == 1


def test_accepted_comment_reports_status_then_is_readable(
    live: Stack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """202 carries the id and a status URL; once published the comment shows its seq there and in the page."""
    base = live.nodes[0].http
    response = post_comment(http, base, stream.slug, api_user.headers, "hello", str(uuid.uuid4()))
    assert response.status_code == 202
    accepted = response.json()
    assert accepted["status"] == "pending"
    wait_published([accepted["id"]])
    shown = http.get(accepted["status_url"]).json()
    assert shown["status"] == "published" and shown["seq"] == 1 and shown["body"] == "hello"
    page = http.get(f"{live.nodes[1].http}/api/v1/streams/{stream.slug}/comments", params={"after": 0}).json()
    assert [c["id"] for c in page["results"]] == [accepted["id"]]
    assert set(page["results"][0]) >= {"id", "seq", "author", "body", "status", "created_at"}
    assert page["next"] is None


def test_pages_follow_next_links_in_sequence(
    live: Stack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """``after``/``limit`` page by sequence and ``next`` chains the pages to the end."""
    base = live.nodes[0].http
    ids = [post_comment(http, base, stream.slug, api_user.headers, f"c{i}").json()["id"] for i in range(7)]
    wait_published(ids)
    url: str | None = f"{base}/api/v1/streams/{stream.slug}/comments?after=0&limit=3"
    seqs: list[int] = []
    while url:
        page = http.get(url).json()
        seqs += [c["seq"] for c in page["results"]]
        url = page["next"]
    assert seqs == list(range(1, 8))


def test_200_concurrent_comments_get_gapless_seq_and_reach_both_nodes_in_order(
    live: Stack, api_user: ApiUser, stream: Stream
) -> None:
    """200 comments from 4 threads get seq 1..200; a WebSocket client on each node sees all, in order."""
    clients = [WsClient(f"{node.ws}/ws/streams/{stream.slug}/") for node in live.nodes]
    nodes = [node.http for node in live.nodes]

    def post_many(thread: int) -> list[str]:
        with httpx.Client(timeout=30) as client:
            ids = []
            for i in range(50):
                response = post_comment(client, nodes[i % 2], stream.slug, api_user.headers, f"t{thread}-{i}")
                assert response.status_code == 202, response.text
                ids.append(response.json()["id"])
            return ids

    with ThreadPoolExecutor(max_workers=4) as pool:
        ids = [i for chunk in pool.map(post_many, range(4)) for i in chunk]

    wait_published(ids, timeout=120)
    seqs = comment_seqs(Comment.objects.filter(stream=stream))
    assert seqs == list(range(1, 201))
    for client in clients:
        events = client.wait_for_seq(200, timeout=60)
        assert [e["seq"] for e in events] == list(range(1, 201))
        assert {e["data"]["id"] for e in events} == set(ids)
        client.close()
