"""The comment limit over real HTTP: one bucket shared by two nodes, headers, 429, the fail-closed mode."""

import threading
import time

import httpx

from realtime.models import Stream
from tests.conftest import ApiUser
from tests.gateway.conftest import CAPACITY, RATE, node_on_private_redis
from tests.support.api import post_comment
from tests.support.processes import AsgiNode, wait_until


def test_two_nodes_hammered_together_admit_at_most_capacity_plus_rate_times_time(
    tuned_nodes: list[AsgiNode], api_user: ApiUser, stream: Stream
) -> None:
    """Both nodes spend one bucket: admitted <= capacity + rate x elapsed (within 1%)."""
    statuses: list[int] = []
    lock = threading.Lock()
    duration = 3.0

    def hammer(node: AsgiNode, stop_at: float) -> None:
        with httpx.Client(timeout=15) as client:
            while time.monotonic() < stop_at:
                response = post_comment(client, node.http, stream.slug, api_user.headers, "hammer")
                with lock:
                    statuses.append(response.status_code)

    started = time.monotonic()
    threads = [threading.Thread(target=hammer, args=(tuned_nodes[i % 2], started + duration)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started

    admitted = statuses.count(202)
    assert set(statuses) == {202, 429}
    bound = CAPACITY + RATE * elapsed
    assert admitted <= bound * 1.01, (admitted, bound)
    # and the bucket really refilled at its rate rather than refusing everything after the burst
    # (over the time requests were being sent: answers still arriving after it refill nothing)
    assert admitted >= CAPACITY + RATE * (duration - 0.5), (admitted, bound)


def test_responses_carry_ratelimit_headers_and_refusals_are_json_429(
    tuned_nodes: list[AsgiNode], api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """Admitted and refused answers say the limit, what is left and when it is full again."""
    first = post_comment(http, tuned_nodes[0].http, stream.slug, api_user.headers, "one")
    assert first.status_code == 202
    assert first.headers["RateLimit-Limit"] == str(CAPACITY)
    assert first.headers["RateLimit-Remaining"] == str(CAPACITY - 1)
    assert 0 < int(first.headers["RateLimit-Reset"]) <= 1
    for _ in range(CAPACITY * 4):  # refills at RATE/s: a fast client still empties it first
        refused = post_comment(http, tuned_nodes[1].http, stream.slug, api_user.headers, "more")
        if refused.status_code == 429:
            break
    assert refused.status_code == 429
    assert refused.json()["code"] == "throttled"
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["RateLimit-Remaining"] == "0"
    # an empty comments bucket does not refuse reads (an anonymous read spends its address's reads bucket)
    assert http.get(f"{tuned_nodes[0].http}/api/v1/streams/{stream.slug}/comments").status_code == 200


def test_limiter_fails_closed_with_503_when_its_redis_dies_and_recovers_by_itself(
    api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """Redis killed: fast 503 + Retry-After + JSON body; Redis back: admitted again, no restart."""
    env = {"CHORUS_BREAKER_RESET_SECONDS": "1", "CHORUS_RATELIMIT_WHEN_REDIS_DOWN": "closed"}
    with node_on_private_redis("gw-limiter-node", variable="CHORUS_GATEWAY_REDIS_URL", env=env) as (node, store):
        assert post_comment(http, node.http, stream.slug, api_user.headers, "before").status_code == 202

        # when: the limiter's Redis dies
        store.kill()
        for _ in range(5):
            started = time.monotonic()
            response = post_comment(http, node.http, stream.slug, api_user.headers, "during")
            assert time.monotonic() - started < 1.0
            assert response.status_code == 503
            assert response.json()["code"] == "service_unavailable"
            assert int(response.headers["Retry-After"]) >= 1

        # then: once it is back, the breaker's trial call succeeds and requests pass again
        store.restart()
        wait_until(
            lambda: post_comment(http, node.http, stream.slug, api_user.headers, "after").status_code == 202,
            timeout=15,
            interval=0.2,
            what="the limiter to recover",
        )
