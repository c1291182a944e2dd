"""Overload protection on real processes: shedding by publish lag and queue depth, breakers that fail fast."""

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import redis
from django.conf import settings

from realtime.models import Stream
from tests.conftest import ApiUser
from tests.gateway.conftest import PrivateDatabase, node_on_private_redis
from tests.support.api import post_comment
from tests.support.processes import AsgiNode, CeleryWorker, wait_until
from tests.support.stores import PostgresServer
from tests.support.ws import WsClient


def _ping_answer(client: WsClient) -> dict:
    seen = len(client.frames)
    client.send({"type": "ping"})
    frames = client.wait_for(
        lambda frames: [f for f in frames[seen:] if f["type"] in ("pong", "error")], timeout=10, what="ping answer"
    )
    return frames[0]


def test_low_priority_is_shed_before_comments_and_both_come_back_when_the_queue_drains(
    api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """Queue past the low mark: frames refused, comments pass; past the high mark: comments 503 too."""
    env = {"CHORUS_SHED_QUEUE_LOW": "5", "CHORUS_SHED_QUEUE_HIGH": "10"}
    with node_on_private_redis("gw-shed-node", variable="CELERY_BROKER_URL", env=env) as (node, broker):
        queue = redis.Redis.from_url(broker.url)
        client = WsClient(f"{node.ws}/ws/streams/{stream.slug}/")
        try:
            assert _ping_answer(client)["type"] == "pong"

            # given: a backlog past the low-priority mark (nothing consumes this broker)
            queue.rpush(settings.CHORUS_SHED_QUEUES[0], *[b"backlog"] * 6)
            answer = wait_until(lambda: _ping_answer(client)["type"] == "error" and client.frames[-1], timeout=5)
            assert answer["code"] == "overloaded"
            assert post_comment(http, node.http, stream.slug, api_user.headers, "still fine").status_code == 202

            # when: the backlog passes the high mark, comments are shed too, with the JSON body
            queue.rpush(settings.CHORUS_SHED_QUEUES[0], *[b"backlog"] * 4)

            def comment_refused() -> httpx.Response | None:
                response = post_comment(http, node.http, stream.slug, api_user.headers, "x")
                return response if response.status_code == 503 else None

            refused = wait_until(comment_refused, timeout=5, what="comments shed")
            assert refused.json()["code"] == "overloaded"
            assert int(refused.headers["Retry-After"]) >= 1

            # then: the queue drains and everything is admitted again
            queue.delete(settings.CHORUS_SHED_QUEUES[0])
            wait_until(
                lambda: post_comment(http, node.http, stream.slug, api_user.headers, "back").status_code == 202,
                timeout=5,
                what="comments admitted again",
            )
            assert _ping_answer(client)["type"] == "pong"
        finally:
            client.close()


def test_broker_down_comments_are_still_accepted_fast_and_handoffs_resume_after_restart(
    api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """The broker breaker opens: accepting stays fast (the outbox sweep relays later); it closes by itself."""
    env = {"CHORUS_BREAKER_RESET_SECONDS": "1"}
    with node_on_private_redis("gw-breaker-node", variable="CELERY_BROKER_URL", env=env) as (node, broker):
        assert post_comment(http, node.http, stream.slug, api_user.headers, "queued").status_code == 202
        wait_until(
            lambda: redis.Redis.from_url(broker.url).llen(settings.CHORUS_TASK_QUEUE) == 1, timeout=5, what="hand-off"
        )

        # when: the broker dies, the first hand-offs fail (and are logged), then the breaker opens
        broker.kill()
        durations = []
        for i in range(6):
            started = time.monotonic()
            assert post_comment(http, node.http, stream.slug, api_user.headers, f"down {i}").status_code == 202
            durations.append(time.monotonic() - started)
        assert max(durations[-3:]) < 0.3, durations
        wait_until(lambda: "circuit breaker broker: closed -> open" in node.log_text(), timeout=5, what="log")

        # then: with the broker back, the breaker's trial hand-off succeeds and tasks flow again
        broker.restart()

        def handed_off() -> bool:
            post_comment(http, node.http, stream.slug, api_user.headers, "after")
            return redis.Redis.from_url(broker.url).llen(settings.CHORUS_TASK_QUEUE) > 0

        wait_until(handed_off, timeout=15, interval=0.3, what="hand-offs to resume")


def test_database_down_answers_503_fast_and_recovers_when_it_returns(
    private_database: PrivateDatabase, http: httpx.Client
) -> None:
    """The database breaker: killed PostgreSQL means quick JSON 503s, a restarted one means 200s again."""
    env = {"DATABASE_URL": private_database.url, "CHORUS_BREAKER_RESET_SECONDS": "1"}
    node = AsgiNode("gw-db-node", env=env).start()
    page = f"{node.http}/api/v1/streams/{private_database.slug}/comments"
    server = private_database.server
    try:
        node.wait_ready()
        assert http.get(page).status_code == 200

        # when: PostgreSQL is killed
        server.kill()
        for _ in range(3):  # these find out (the pool's connection is gone) and open the breaker
            assert http.get(page).status_code == 503
        for _ in range(5):
            started = time.monotonic()
            response = http.get(page)
            assert time.monotonic() - started < 0.3
            assert response.status_code == 503
            assert response.json()["code"] == "service_unavailable"
            assert int(response.headers["Retry-After"]) >= 1

        # then: once it is back, the breaker's probe succeeds and pages are served again
        private_database.server = PostgresServer(server.name, server.datadir, port=server.port).start().wait_ready()
        wait_until(lambda: http.get(page).status_code == 200, timeout=20, interval=0.2, what="database recovery")
    finally:
        node.stop()


def test_comments_are_shed_on_publish_lag_not_on_a_burst_the_sequencer_absorbs(
    api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """A burst is accepted; comments waiting past the lag threshold make later comments 503; a worker clears it."""
    env = {"CHORUS_SHED_PUBLISH_LAG_LOW": "1", "CHORUS_SHED_PUBLISH_LAG_HIGH": "3"}
    with node_on_private_redis("gw-lag-node", variable="CELERY_BROKER_URL", env=env) as (node, broker):
        # given: a burst with nothing publishing yet (no worker on this broker): all accepted
        with ThreadPoolExecutor(16) as pool:
            burst = list(
                pool.map(lambda i: post_comment(http, node.http, stream.slug, api_user.headers, f"b{i}"), range(100))
            )
        assert [r.status_code for r in burst] == [202] * 100

        # when: the oldest of them has waited past the threshold, comments are refused with the JSON body
        def comment_refused() -> httpx.Response | None:
            response = post_comment(http, node.http, stream.slug, api_user.headers, "late")
            return response if response.status_code == 503 else None

        refused = wait_until(comment_refused, timeout=15, interval=0.5, what="comments shed on publish lag")
        assert refused.json()["code"] == "overloaded"
        assert int(refused.headers["Retry-After"]) >= 1

        # then: a worker publishes the backlog and comments are admitted again
        worker = CeleryWorker("gw-lag-worker", env={"CELERY_BROKER_URL": broker.url}).start().wait_ready()
        try:
            wait_until(
                lambda: post_comment(http, node.http, stream.slug, api_user.headers, "back").status_code == 202,
                timeout=30,
                interval=0.5,
                what="comments admitted again",
            )
        finally:
            worker.stop()
