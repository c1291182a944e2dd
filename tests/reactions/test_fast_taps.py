"""The HTTP fast lane for live taps (``gateway/fast_lane.py``) answers exactly as the DRF view does."""

from concurrent.futures import ThreadPoolExecutor

import httpx
from django.conf import settings
from django.test import Client
from rest_framework.authtoken.models import Token

from reactions.redis_counters import counter_state_read, counts_of
from realtime.models import Stream
from tests.conftest import ApiUser, Stack
from tests.factories import StreamFactory, UserFactory
from tests.support.processes import AsgiNode, wait_until
from tests.support.stores import RedisServer

CSRF = "a" * 32


def _url(node, slug: str) -> str:
    return f"{node.http}/api/v1/streams/{slug}/reactions"


def _session_cookies(user) -> dict[str, str]:
    client = Client()
    client.force_login(user)
    return {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value, "csrftoken": CSRF}


def _via_django(response: httpx.Response) -> bool:
    # DRF's APIView adds ``Allow``; the fast lane answers without it. The reference node has the
    # lane switched off, so it answers every request through Django and DRF.
    return "allow" in response.headers


def _shape(response: httpx.Response) -> tuple[int, object, object]:
    body = response.json()
    return response.status_code, body.get("code", body.get("kind")), sorted(body.get("fields", {}))


def test_every_status_code_matches_the_drf_view(
    live: Stack, reference_node: AsgiNode, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """202, 400 (each bad body), 401, 404 and 415, with a token and with a session: the lane and
    Django give the same answers."""
    lane, reference = _url(live.nodes[0], stream.slug), _url(reference_node, stream.slug)
    session = httpx.Client(timeout=15, cookies=_session_cookies(api_user.user), headers={"X-CSRFToken": CSRF})
    json_type = {"Content-Type": "application/json"}
    bodies = [
        b'{"kind": "heart"}',
        b'{"kind": "thumbsdown"}',
        b"{}",
        b'{"kind": null}',
        b'{"kind": ["heart"]}',
        b"not json",
        b"[1, 2]",
        b'"heart"',
    ]
    for client, headers in ((http, {**api_user.headers, **json_type}), (session, json_type)):
        for body in bodies:
            fast = client.post(lane, content=body, headers=headers)
            slow = client.post(reference, content=body, headers=headers)
            assert not _via_django(fast) and _via_django(slow), body
            assert _shape(fast) == _shape(slow), (body, fast.text, slow.text)
            assert fast.status_code in (202, 400)
    missing = [
        http.post(_url(node, "no-such-stream"), json={"kind": "heart"}, headers=api_user.headers)
        for node in (live.nodes[1], reference_node)
    ]
    assert not _via_django(missing[0]) and _shape(missing[0]) == _shape(missing[1]) == (404, "not_found", [])
    bad = {"Authorization": "Token nope"}
    fast = http.post(lane, json={"kind": "heart"}, headers=bad)
    slow = http.post(reference, json={"kind": "heart"}, headers=bad)
    assert not _via_django(fast) and _via_django(slow)
    assert _shape(fast) == _shape(slow) == (401, "authentication_failed", [])
    assert fast.headers["WWW-Authenticate"] == slow.headers["WWW-Authenticate"] == "Token"
    # 415: not JSON is never taken by the fast lane
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert http.post(lane, content=b"kind=heart", headers={**api_user.headers, **form}).status_code == 415
    assert session.post(lane, content=b"kind=heart", headers=form).status_code == 415
    # over 1 KiB: refused before parsing, never a 500
    big = http.post(
        lane, content=b'{"kind": "heart", "pad": "' + b"x" * 2000 + b'"}', headers={**api_user.headers, **json_type}
    )
    assert big.status_code == 413 and big.json()["code"] == "too_large"
    session.close()
    assert counts_of(counter_state_read(stream_id=stream.id)) == {"heart": 4}


def test_rate_limits_answer_429_with_retry_after_on_both_paths(
    live: Stack, reference_node: AsgiNode, stream: Stream, http: httpx.Client
) -> None:
    """Over the per-user tap limit both paths say 429 ``rate_limited`` with Retry-After; the headers match."""
    fast_user, slow_user = UserFactory.create(), UserFactory.create()
    token = {"Authorization": f"Token {Token.objects.create(user=fast_user).key}"}
    session = httpx.Client(timeout=15, cookies=_session_cookies(slow_user), headers={"X-CSRFToken": CSRF})
    taps = settings.CHORUS_REACTION_TAPS_PER_SECOND + 25
    fast = [session.post(_url(live.nodes[0], stream.slug), json={"kind": "fire"}) for _ in range(taps)]
    slow = [http.post(_url(reference_node, stream.slug), json={"kind": "fire"}, headers=token) for _ in range(taps)]
    session.close()
    assert not _via_django(fast[0]) and _via_django(slow[0])
    for responses in (fast, slow):
        limited = [r for r in responses if r.status_code == 429]
        assert limited and {r.status_code for r in responses} == {202, 429}
        assert limited[0].json()["code"] == "rate_limited" and int(limited[0].headers["Retry-After"]) >= 1
        assert "RateLimit-Limit" in responses[0].headers and "RateLimit-Remaining" in limited[0].headers
    accepted = sum(r.status_code == 202 for r in fast + slow)
    assert counts_of(counter_state_read(stream_id=stream.id)) == {"fire": accepted}


def test_many_concurrent_taps_on_both_nodes_are_counted_exactly(
    live: Stack, stream: Stream, http: httpx.Client
) -> None:
    """240 token taps from 8 users over both nodes at once: every 202 is counted once."""
    users = [UserFactory.create() for _ in range(8)]
    tokens = [Token.objects.create(user=u).key for u in users]

    def send(i: int) -> int:
        with httpx.Client(timeout=15) as client:
            ok = 0
            for n in range(30):
                node = live.nodes[(i + n) % 2]
                headers = {"Authorization": f"Token {tokens[i]}"}
                response = client.post(_url(node, stream.slug), json={"kind": "clap"}, headers=headers)
                assert response.status_code in (202, 429), response.text
                ok += response.status_code == 202
            return ok

    with ThreadPoolExecutor(8) as pool:
        accepted = sum(pool.map(send, range(8)))
    assert accepted > 0
    assert counts_of(counter_state_read(stream_id=stream.id)) == {"clap": accepted}


def test_session_requests_need_csrf_on_the_lane_too(live: Stack, api_user: ApiUser, stream: Stream) -> None:
    """A session cookie without the CSRF header is refused (403, CSRF), unless a token authenticates
    the request (DRF tries the token first, and a token needs no CSRF)."""
    url = _url(live.nodes[0], stream.slug)
    cookies = _session_cookies(api_user.user)
    with httpx.Client(timeout=15, cookies=cookies) as client:
        refused = client.post(url, json={"kind": "heart"})
        assert refused.status_code == 403 and "CSRF" in refused.json()["detail"] and not _via_django(refused)
        with_token = client.post(url, json={"kind": "heart"}, headers=api_user.headers)
        assert not _via_django(with_token) and with_token.status_code == 202
        accepted = client.post(url, json={"kind": "heart"}, headers={"X-CSRFToken": CSRF})
        assert accepted.status_code == 202 and not _via_django(accepted)
    assert counts_of(counter_state_read(stream_id=stream.id)) == {"heart": 2}


def test_a_deleted_token_or_stream_is_refused_within_the_cache_bound(
    live: Stack, api_user: ApiUser, http: httpx.Client
) -> None:
    """After deletion the lane answers 404 within CHORUS_FAST_TAP_CACHE_SECONDS (stream), 401 within
    CHORUS_TOKEN_CACHE_SECONDS (token)."""
    doomed = StreamFactory.create(slug="doomed-fast-lane")
    url = _url(live.nodes[0], doomed.slug)
    assert http.post(url, json={"kind": "wow"}, headers=api_user.headers).status_code == 202
    doomed.delete()
    bound = settings.CHORUS_FAST_TAP_CACHE_SECONDS + 5
    wait_until(
        lambda: http.post(url, json={"kind": "wow"}, headers=api_user.headers).status_code == 404,
        timeout=bound,
        interval=0.2,
        what="the deleted stream to be 404",
    )
    live_stream = StreamFactory.create(slug="kept-fast-lane")
    url = _url(live.nodes[0], live_stream.slug)
    assert http.post(url, json={"kind": "wow"}, headers=api_user.headers).status_code == 202
    Token.objects.filter(key=api_user.token).delete()
    wait_until(
        lambda: http.post(url, json={"kind": "wow"}, headers=api_user.headers).status_code == 401,
        timeout=settings.CHORUS_TOKEN_CACHE_SECONDS + 5,
        interval=0.2,
        what="the deleted token to be 401",
    )


def test_redis_down_is_503_on_both_paths(live: Stack, api_user: ApiUser, stream: Stream, http: httpx.Client) -> None:
    """With the nodes' Redis killed, the lane and Django both answer 503 service_unavailable."""
    store = RedisServer("fast-taps-redis").start().wait_ready()
    lane = AsgiNode("fast-taps-node", env={"REDIS_URL": store.url}).start()
    reference = AsgiNode("fast-taps-reference", env={"REDIS_URL": store.url, "CHORUS_FAST_LANE": "0"}).start()
    try:
        lane.wait_ready()
        reference.wait_ready()
        assert http.post(_url(lane, stream.slug), json={"kind": "laugh"}, headers=api_user.headers).status_code == 202
        store.kill()
        fast = http.post(_url(lane, stream.slug), json={"kind": "laugh"}, headers=api_user.headers)
        slow = http.post(_url(reference, stream.slug), json={"kind": "laugh"}, headers=api_user.headers)
        assert not _via_django(fast) and _via_django(slow)
        assert _shape(fast) == _shape(slow) == (503, "service_unavailable", []), (fast.text, slow.text)
    finally:
        lane.stop()
        reference.stop()
        store.stop()
