"""The HTTP fast lane (``gateway/fast_lane.py``) answers comment posts exactly as Django and DRF do.

Every case is sent to a node with the lane and to the reference node (the lane switched off), and
the answers must match: status, error code, the fields named, and the headers a client acts on.
"""

import uuid

import httpx
import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from comments.models import Comment
from realtime.models import Stream
from tests.conftest import ApiUser, Stack
from tests.factories import StreamFactory
from tests.support.processes import AsgiNode

pytestmark = pytest.mark.django_db(transaction=True)

CSRF = "a" * 32
JSON = {"Content-Type": "application/json"}


def _session_client(user) -> httpx.Client:
    client = Client()
    client.force_login(user)
    cookies = {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value, "csrftoken": CSRF}
    return httpx.Client(timeout=15, cookies=cookies, headers={"X-CSRFToken": CSRF})


def _shape(response: httpx.Response) -> tuple[int, object, list[str]]:
    body = response.json()
    return response.status_code, body.get("code", body.get("status")), sorted(body.get("fields", {}))


def _via_lane(response: httpx.Response) -> bool:
    # DRF's APIView answers with ``Allow``; the lane does not.
    return "allow" not in response.headers


BODIES = [
    b'{"body": "hello"}',
    b'{"body": 42}',
    b"{}",
    b'{"body": ""}',
    b'{"body": null}',
    b'{"body": "' + b"x" * 2001 + b'"}',
    b'{"body": "reply", "parent": "not-a-uuid"}',
    b'{"body": "reply", "parent": "' + str(uuid.uuid4()).encode() + b'"}',
    b"not json",
    b"[1, 2]",
    b'"just a string"',
]


def test_token_and_session_posts_get_the_reference_answers(
    live: Stack, reference_node: AsgiNode, api_user: ApiUser, stream: Stream
) -> None:
    """Every body, with a token and with a session: the lane and the reference answer alike."""
    lane = f"{live.nodes[0].http}/api/v1/streams/{stream.slug}/comments"
    reference = f"{reference_node.http}/api/v1/streams/{stream.slug}/comments"
    token = httpx.Client(timeout=15, headers=api_user.headers)
    session = _session_client(api_user.user)
    try:
        for client in (token, session):
            for body in BODIES:
                fast = client.post(lane, content=body, headers=JSON)
                slow = client.post(reference, content=body, headers=JSON)
                assert _via_lane(fast) and not _via_lane(slow), body
                assert _shape(fast) == _shape(slow), (body, fast.text, slow.text)
                assert fast.status_code in (202, 400, 422), (body, fast.text)  # 422: an unknown parent
                if fast.status_code == 202:
                    assert fast.json()["status_url"].startswith(live.nodes[0].http + "/api/v1/comments/")
        # the lane adds what Django's security middleware would
        answer = token.post(lane, json={"body": "headers"})
        for header in ("X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy", "RateLimit-Limit"):
            assert header in answer.headers, header
    finally:
        token.close()
        session.close()


def test_idempotency_stream_state_and_credentials_match_the_reference(
    live: Stack, reference_node: AsgiNode, api_user: ApiUser, stream: Stream
) -> None:
    """Keys (one comment across both paths, 422 on reuse, 400 when malformed), 404, 409, 401 and CSRF 403s."""
    base, ref = live.nodes[0].http, reference_node.http

    def post(node: str, slug: str, body: dict, headers: dict[str, str], client: httpx.Client | None = None):
        http = client or httpx.Client(timeout=15)
        try:
            return http.post(f"{node}/api/v1/streams/{slug}/comments", json=body, headers=headers)
        finally:
            if client is None:
                http.close()

    key = {**api_user.headers, "Idempotency-Key": "same-key"}
    first, again = post(base, stream.slug, {"body": "once"}, key), post(ref, stream.slug, {"body": "once"}, key)
    assert first.status_code == again.status_code == 202 and first.json()["id"] == again.json()["id"]
    assert Comment.objects.filter(stream=stream).count() == 1
    reused = [post(node, stream.slug, {"body": "other"}, key) for node in (base, ref)]
    assert _shape(reused[0]) == _shape(reused[1]) == (422, "idempotency_key_reused", ["Idempotency-Key"])
    malformed = {**api_user.headers, "Idempotency-Key": "k" * 256}
    bad_keys = [post(node, stream.slug, {"body": "x"}, malformed) for node in (base, ref)]
    assert _shape(bad_keys[0]) == _shape(bad_keys[1]) == (400, "invalid", ["Idempotency-Key"])

    missing = [post(node, "no-such-stream", {"body": "x"}, api_user.headers) for node in (base, ref)]
    assert _shape(missing[0]) == _shape(missing[1]) == (404, "not_found", [])
    closed = StreamFactory.create(slug=f"closed-{uuid.uuid4().hex[:6]}")
    Stream.objects.filter(id=closed.id).update(closed_at=timezone.now())
    refused = [post(node, closed.slug, {"body": "x"}, api_user.headers) for node in (base, ref)]
    assert _shape(refused[0]) == _shape(refused[1]) == (409, "stream_closed", [])
    assert refused[0].json() == refused[1].json()

    bad_token = {"Authorization": "Token not-a-token"}
    unknown = [post(node, stream.slug, {"body": "x"}, bad_token) for node in (base, ref)]
    assert _shape(unknown[0]) == _shape(unknown[1]) == (401, "authentication_failed", [])
    assert unknown[0].headers["WWW-Authenticate"] == unknown[1].headers["WWW-Authenticate"] == "Token"

    session = _session_client(api_user.user)
    try:
        for headers in ({"X-CSRFToken": ""}, {"X-CSRFToken": "b" * 32}):
            csrf = [post(node, stream.slug, {"body": "x"}, headers, session) for node in (base, ref)]
            assert _shape(csrf[0]) == _shape(csrf[1]) == (403, "permission_denied", [])
            assert csrf[0].json() == csrf[1].json()
            assert csrf[0].json()["detail"].startswith("CSRF Failed")
    finally:
        session.close()


def test_a_signed_out_session_is_answered_as_anonymous(
    live: Stack, reference_node: AsgiNode, api_user: ApiUser, stream: Stream
) -> None:
    """A session cookie that signs in nobody goes to Django: the same answer as on the reference node."""
    stale = httpx.Client(timeout=15, cookies={settings.SESSION_COOKIE_NAME: "nobody", "csrftoken": CSRF})
    try:
        answers = [
            stale.post(
                f"{node}/api/v1/streams/{stream.slug}/comments", json={"body": "x"}, headers={"X-CSRFToken": CSRF}
            )
            for node in (live.nodes[0].http, reference_node.http)
        ]
    finally:
        stale.close()
    assert _shape(answers[0]) == _shape(answers[1])
    assert answers[0].status_code in (401, 403)
