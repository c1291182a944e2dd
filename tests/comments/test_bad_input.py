"""Every bad request gets a 4xx with a JSON body naming the problem, and writes nothing."""

import uuid

import httpx
import pytest

from comments.models import Comment
from realtime.models import Stream, StreamEvent
from tests.conftest import ApiUser, Stack

pytestmark = pytest.mark.django_db(transaction=True)

MAX = 2000


def _post(http, base, slug, headers, **kwargs):
    return http.post(f"{base}/api/v1/streams/{slug}/comments", headers=headers, **kwargs)


@pytest.mark.parametrize(
    ("case", "kwargs", "status", "names"),
    [
        ("empty body", {"json": {"body": ""}}, 400, "body"),
        ("blank body", {"json": {"body": "   "}}, 400, "body"),
        ("missing body", {"json": {}}, 400, "body"),
        ("null body", {"json": {"body": None}}, 400, "body"),
        ("oversized body", {"json": {"body": "x" * (MAX + 1)}}, 400, "body"),
        ("NUL byte", {"json": {"body": "a\u0000b"}}, 400, "body"),
        ("not an object", {"json": ["body"]}, 400, "non_field_errors"),
        ("invalid JSON", {"content": b"{bad", "headers": {"Content-Type": "application/json"}}, 400, "JSON"),
        ("wrong content type", {"content": b"body=x", "headers": {"Content-Type": "text/plain"}}, 415, "text/plain"),
        ("bad parent", {"json": {"body": "x", "parent": "nope"}}, 400, "parent"),
        ("unknown parent", {"json": {"body": "x", "parent": str(uuid.uuid4())}}, 422, "parent"),
        ("number for a body", {"json": {"body": 0}}, 400, "body"),
        ("false for a parent", {"json": {"body": "x", "parent": False}}, 400, "parent"),
        ("non-canonical parent", {"json": {"body": "x", "parent": uuid.uuid4().hex}}, 400, "parent"),
        (
            "long idempotency key",
            {"json": {"body": "x"}, "headers": {"Idempotency-Key": "k" * 256}},
            400,
            "Idempotency-Key",
        ),
    ],
)
def test_bad_post_is_a_4xx_naming_the_problem(
    live: Stack, api_user: ApiUser, stream: Stream, http: httpx.Client, case, kwargs, status, names
) -> None:
    """Each malformed POST is refused with a JSON error and no row is written."""
    headers = {**api_user.headers, **kwargs.pop("headers", {})}
    response = _post(http, live.nodes[0].http, stream.slug, headers, **kwargs)
    assert response.status_code == status, (case, response.text)
    assert response.headers["Content-Type"].startswith("application/json")
    assert names in response.text, (case, response.text)
    assert Comment.objects.count() == 0
    assert StreamEvent.objects.count() == 0


def test_post_to_unknown_stream_is_404(live: Stack, api_user: ApiUser, http: httpx.Client) -> None:
    response = _post(http, live.nodes[0].http, "no-such-stream", api_user.headers, json={"body": "x"})
    assert response.status_code == 404
    assert "no-such-stream" in response.json()["detail"]
    assert Comment.objects.count() == 0


def test_anonymous_post_is_401(live: Stack, stream: Stream, http: httpx.Client) -> None:
    response = _post(http, live.nodes[0].http, stream.slug, {}, json={"body": "x"})
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert Comment.objects.count() == 0


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"after": "abc"}, "after"),
        ({"after": "-1"}, "after"),
        ({"limit": "0"}, "limit"),
        ({"limit": "100000"}, "limit"),
        ({"limit": "ten"}, "limit"),
    ],
)
def test_bad_page_query_is_400_naming_the_parameter(
    live: Stack, stream: Stream, http: httpx.Client, params, field
) -> None:
    response = http.get(f"{live.nodes[0].http}/api/v1/streams/{stream.slug}/comments", params=params)
    assert response.status_code == 400
    assert field in response.json()["fields"]


def test_unknown_stream_and_comment_are_json_404s(live: Stack, http: httpx.Client) -> None:
    base = live.nodes[0].http
    for url in [
        f"{base}/api/v1/streams/nope/comments",
        f"{base}/api/v1/comments/{uuid.uuid4()}",
        f"{base}/api/v1/comments/not-a-uuid",
        f"{base}/api/v1/no-such-endpoint",
    ]:
        response = http.get(url)
        assert response.status_code == 404, url
        assert response.json()["code"] == "not_found"
