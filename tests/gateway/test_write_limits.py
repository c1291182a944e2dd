"""Every endpoint that writes spends a gateway bucket: edits, deletes, reaction toggles, sagas, retries.

One node started as ``make run`` starts it, with buckets that barely refill, so each user's
admitted writes are exactly the bucket's capacity (plus at most one refilled token).
"""

import json
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.views import APIView

from comments.models import Comment, CommentStatus
from gateway.throttles import GatewayThrottle, InternalThrottle
from realtime.models import Stream
from tests.conftest import ApiUser
from tests.support.processes import ServedNode

CAPACITY, RATE = 5, 0.05
LIMITED = {
    "CHORUS_RATE_LIMITS": json.dumps({"regular": {"comments": [CAPACITY, RATE], "writes": [CAPACITY, RATE]}}),
    "CHORUS_TIER_HOT_ABOVE": "1000000",
}
UNSAFE = ("post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def node(django_db_setup: None) -> Iterator[ServedNode]:
    served = ServedNode("gw-writes", env=LIMITED).start()
    try:
        yield served.wait_ready()
    finally:
        served.stop()


def _published_comment(stream, author) -> Comment:
    return Comment.objects.create(
        stream=stream, author=author, body="hi", status=CommentStatus.PUBLISHED, idempotency_key=str(uuid.uuid4())
    )


def _hammer(send: Callable[[int], httpx.Response], attempts: int = CAPACITY * 4) -> list[httpx.Response]:
    return [send(i) for i in range(attempts)]


def _assert_limited(responses: list[httpx.Response], *, answers: set[int]) -> None:
    """The bucket's capacity (and at most one refilled token) admitted, then JSON 429s with Retry-After."""
    admitted = [r for r in responses if r.status_code != 429]
    refused = [r for r in responses if r.status_code == 429]
    assert CAPACITY <= len(admitted) <= CAPACITY + 1, [r.status_code for r in responses]
    assert {r.status_code for r in admitted} <= answers, [(r.status_code, r.text[:200]) for r in admitted]
    assert refused, "no write was refused"
    for response in refused:
        assert response.json()["code"] == "throttled"
        assert int(response.headers["Retry-After"]) >= 1
        assert response.headers["RateLimit-Remaining"] == "0"


def test_reaction_toggles_are_limited(node: ServedNode, api_user: ApiUser, stream: Stream, http: httpx.Client) -> None:
    """PUT/DELETE of a reaction, back and forth: each one writes an event, so each spends a token."""
    url = f"{node.http}/api/v1/comments/{_published_comment(stream, api_user.user).id}/reactions/heart"
    _assert_limited(
        _hammer(lambda i: (http.put if i % 2 == 0 else http.delete)(url, headers=api_user.headers)), answers={201, 204}
    )


def test_edits_and_deletes_are_limited(node: ServedNode, api_user: ApiUser, stream: Stream, http: httpx.Client) -> None:
    """Edits (If-Match from the last answer) and then deletes spend one bucket."""
    comment = _published_comment(stream, api_user.user)
    url = f"{node.http}/api/v1/comments/{comment.id}"
    etag = http.get(url).headers["ETag"]

    def edit(i: int) -> httpx.Response:
        nonlocal etag
        response = http.patch(url, json={"body": f"edit {i}"}, headers={**api_user.headers, "If-Match": etag})
        etag = response.headers.get("ETag", etag)
        return response

    edits = _hammer(edit, attempts=CAPACITY + 2)
    _assert_limited(edits, answers={200})
    # the bucket is shared: a delete right after is refused too
    assert http.delete(url, headers=api_user.headers).status_code == 429


def test_deletes_are_limited(node: ServedNode, api_user: ApiUser, stream: Stream, http: httpx.Client) -> None:
    """A delete is idempotent (204 again and again) but still spends a token each time."""
    url = f"{node.http}/api/v1/comments/{_published_comment(stream, api_user.user).id}"
    _assert_limited(_hammer(lambda _: http.delete(url, headers=api_user.headers)), answers={204})


def test_comment_and_react_spends_the_comments_bucket(
    node: ServedNode, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """The saga posts a comment: it is counted against the comment limit, so it cannot bypass it."""
    saga_url = f"{node.http}/api/v1/streams/{stream.slug}/comment-and-react"
    sagas = _hammer(
        lambda i: http.post(saga_url, json={"body": f"saga {i}", "kind": "heart"}, headers=api_user.headers)
    )
    _assert_limited(sagas, answers={202})
    # the same bucket as plain comments: those are refused now too
    plain = http.post(
        f"{node.http}/api/v1/streams/{stream.slug}/comments", json={"body": "x"}, headers=api_user.headers
    )
    assert plain.status_code == 429
    assert plain.headers["RateLimit-Limit"] == str(CAPACITY)


def test_saga_retries_are_limited(node: ServedNode, api_user: ApiUser, stream: Stream, http: httpx.Client) -> None:
    """Asking for a retry spends a token whatever the answer (here 409: nothing to retry yet)."""
    started = http.post(
        f"{node.http}/api/v1/streams/{stream.slug}/comment-and-react",
        json={"body": "to retry", "kind": "heart"},
        headers=api_user.headers,
    )
    assert started.status_code == 202, started.text
    retry_url = f"{node.http}/api/v1/sagas/{started.json()['id']}/retry"
    _assert_limited(_hammer(lambda _: http.post(retry_url, headers=api_user.headers)), answers={409})


def _api_views(patterns: list[URLPattern | URLResolver], prefix: str = "") -> Iterator[tuple[str, type[APIView]]]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _api_views(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(view_class := getattr(entry.callback, "cls", None), type) and issubclass(view_class, APIView):
            yield prefix + str(entry.pattern), view_class


def test_every_api_view_that_writes_spends_a_gateway_bucket_by_default() -> None:
    """A view is limited unless it says otherwise: the default throttles cover every unsafe method."""
    unlimited = []
    for route, view_class in _api_views(get_resolver().url_patterns):
        reads_only = not any(hasattr(view_class, method) for method in UNSAFE)
        if reads_only or view_class.__module__.startswith("rest_framework"):
            continue  # DRF's own view is the token sign-in, limited per address by django-ratelimit
        throttles = view_class().get_throttles()
        if not any(isinstance(t, GatewayThrottle | InternalThrottle) for t in throttles):
            unlimited.append(route)
    assert unlimited == []
