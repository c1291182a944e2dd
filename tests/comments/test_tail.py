"""Joining at the tail: the latest comments and the position they are current at, then the socket."""

import threading

import httpx
import pytest

from comments.models import Comment, CommentStatus
from realtime.models import Stream
from tests.conftest import ApiUser, Stack
from tests.support.api import post_comment, wait_published
from tests.support.processes import wait_until
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)


def _tail(http, base, slug, query):
    return http.get(f"{base}/api/v1/streams/{slug}/comments?{query}")


def test_tail_is_the_latest_comments_oldest_first_at_the_head(
    live: Stack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """tail=N answers the latest N published comments in order, without deleted ones, and the head."""
    # given five published comments, the fourth deleted (the delete is an event: it moves the head)
    base = live.nodes[0].http
    ids = [post_comment(http, base, stream.slug, api_user.headers, f"c{i}").json()["id"] for i in range(5)]
    wait_published(ids)
    assert http.delete(f"{base}/api/v1/comments/{ids[3]}", headers=api_user.headers).status_code == 204

    # when
    response = _tail(http, base, stream.slug, "tail=3")

    # then
    assert response.status_code == 200, response.text
    page = response.json()
    assert [c["body"] for c in page["results"]] == ["c1", "c2", "c4"]
    assert [c["seq"] for c in page["results"]] == [2, 3, 5]
    assert page["position"] == {"epoch": 1, "seq": 6}
    assert _tail(http, base, stream.slug, "tail=0").json() == {"results": [], "position": {"epoch": 1, "seq": 6}}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("tail=-1", "tail"),
        ("tail=501", "tail"),
        ("tail=x", "tail"),
        ("tail=5&after=3", "tail"),
        ("tail=5&limit=10", "tail"),
    ],
)
def test_bad_tail_is_a_400_naming_the_field(live: Stack, stream: Stream, http: httpx.Client, query, field) -> None:
    """A bad or conflicting tail is refused with the API's JSON error naming it."""
    response = _tail(http, live.nodes[0].http, stream.slug, query)
    assert response.status_code == 400, (query, response.text)
    body = response.json()
    assert body["code"] == "invalid"
    assert list(body["fields"]) == [field], body


def test_tail_of_unknown_stream_is_404(live: Stack, http: httpx.Client) -> None:
    response = _tail(http, live.nodes[0].http, "no-such-stream", "tail=5")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_tail_then_socket_after_its_position_yields_every_comment_once_under_a_concurrent_writer(
    live: Stack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """Viewers join (tail read, then a socket with after=position) while comments keep coming: each
    viewer ends with every comment after its tail's oldest exactly once, and nothing before."""
    node_a, node_b = live.nodes
    total = 150
    posted: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        with httpx.Client(timeout=15) as client:
            for i in range(total):
                if stop.is_set():
                    return
                node = (node_a, node_b)[i % 2]
                response = post_comment(client, node.http, stream.slug, api_user.headers, f"w{i}")
                assert response.status_code == 202, response.text
                posted.append(response.json()["id"])

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    viewers: list[tuple[list[dict], int, WsClient]] = []
    try:
        for join in range(6):
            # Join at different points of the writer's run, on both nodes.
            def reached(point: int = join) -> bool:
                return len(posted) >= point * total // 7

            wait_until(reached, timeout=60, what=f"join point {join}")
            node = (node_a, node_b)[join % 2]
            page = _tail(http, node.http, stream.slug, "tail=20").json()
            head = page["position"]["seq"]
            viewers.append((page["results"], head, WsClient(f"{node.ws}/ws/streams/{stream.slug}/?after={head}")))
        thread.join(timeout=120)
        assert not thread.is_alive() and len(posted) == total
        wait_published(posted)
        last = Comment.objects.filter(stream=stream).order_by("-seq").values_list("seq", flat=True).first()
        assert last is not None

        published = Comment.objects.filter(stream=stream, status=CommentStatus.PUBLISHED).values_list("seq", "id")
        by_seq = {seq: comment_id for seq, comment_id in published if seq is not None}
        for results, head, socket in viewers:
            events = socket.wait_for_seq(last, timeout=60)
            tail_seqs = [c["seq"] for c in results]
            assert tail_seqs == sorted(tail_seqs) and all(seq <= head for seq in tail_seqs)
            # The tail is the latest 20 (or all) comments at its head: nothing between them is missing.
            assert tail_seqs == sorted(seq for seq in by_seq if seq <= head)[-20:]
            socket_seqs = [e["seq"] for e in events]
            assert socket_seqs == list(range(head + 1, last + 1)), "the socket starts right after the tail"
            seen = [c["id"] for c in results] + [e["data"]["id"] for e in events if e["event"] == "comment.created"]
            expected = [str(by_seq[seq]) for seq in sorted(by_seq) if seq >= (tail_seqs[0] if tail_seqs else 1)]
            assert seen == expected, "every comment exactly once, in order"
    finally:
        stop.set()
        for _results, _head, socket in viewers:
            socket.close()
