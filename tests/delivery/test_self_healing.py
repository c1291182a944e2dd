"""Accepted work heals itself: whatever the broker loses, beat re-drives it from PostgreSQL.

Each test runs a node, a worker and beat on a private Redis (data, pub/sub and broker), so it can
lose the broker's memory for real: by restarting Redis empty, or by purging the task queue.
"""

import json
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import pytest
import redis

from comments.models import Comment, CommentStatus
from comments.services import PUBLISH_TASK
from delivery.models import OutboxMessage
from delivery.services import dead_letter_record
from realtime.models import Stream, StreamEvent
from sagas.models import SagaRun, SagaState
from tests.conftest import ApiUser
from tests.factories import UserFactory
from tests.support.api import comment_seqs, post_comment, wait_published
from tests.support.brokers import unique_queue
from tests.support.processes import AsgiNode, CeleryBeat, CeleryWorker, ManagedProcess, manage, wait_until
from tests.support.stores import RedisServer
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)

REDRIVE_SECONDS = 2


@dataclass
class HealingStack:
    redis: RedisServer
    env: dict[str, str]
    node: AsgiNode
    worker: CeleryWorker | None = None
    others: list[ManagedProcess] = field(default_factory=list)

    def start_worker(self) -> CeleryWorker:
        self.worker = CeleryWorker("heal-worker", env=self.env).start().wait_ready()
        return self.worker

    def start_beat(self) -> None:
        self.others.append(CeleryBeat("heal-beat", env=self.env).start())

    def purge_queue(self) -> int:
        """Lose every task message waiting in the broker (what a purge or a failover does); how many."""
        client = redis.Redis.from_url(self.redis.url)
        with client.pipeline() as pipe:
            pipe.llen(self.env["CHORUS_TASK_QUEUE"])
            pipe.delete(self.env["CHORUS_TASK_QUEUE"])
            return int(pipe.execute()[0])


@pytest.fixture
def healing_stack(transactional_db: None) -> Iterator[HealingStack]:
    store = RedisServer("heal-redis").start().wait_ready()
    env = {
        "REDIS_URL": store.url,
        "CHORUS_TASK_QUEUE": unique_queue(),
        "CHORUS_PUBLISH_REDRIVE_SECONDS": str(REDRIVE_SECONDS),
    }
    node = AsgiNode("heal-node", env=env).start()
    stack = HealingStack(redis=store, env=env, node=node)
    try:
        node.wait_ready()
        yield stack
    finally:
        for process in [node, *([stack.worker] if stack.worker else []), *stack.others]:
            process.stop()
        store.stop()


def _post_many(base: str, slug: str, headers: dict[str, str], count: int) -> list[str]:
    with httpx.Client(timeout=30) as client, ThreadPoolExecutor(8) as pool:
        responses = list(
            pool.map(lambda i: post_comment(client, base, slug, headers, f"comment {i}", f"key-{i}"), range(count))
        )
    assert [r.status_code for r in responses] == [202] * count
    return [r.json()["id"] for r in responses]


def _assert_published_once_gapless(stream, ids: list[str]) -> None:
    seqs = comment_seqs(Comment.objects.filter(id__in=ids))
    assert seqs == list(range(1, len(ids) + 1))
    assert StreamEvent.objects.filter(stream=stream, type="comment.created").count() == len(ids)


def test_comments_whose_task_was_lost_are_redriven(
    healing_stack: HealingStack, api_user: ApiUser, stream: Stream
) -> None:
    """No worker while 50 comments are accepted and their task is purged: beat alone gets them published."""
    # given: accepted comments whose only task message is lost (no worker has seen it)
    ids = _post_many(healing_stack.node.http, stream.slug, api_user.headers, 50)
    assert healing_stack.purge_queue() >= 1
    assert Comment.objects.filter(id__in=ids, status=CommentStatus.PENDING).count() == 50

    # when: workers and beat run again
    healing_stack.start_worker()
    healing_stack.start_beat()

    # then: the stream is re-driven and every comment is published once, gapless
    wait_published(ids, timeout=60)
    _assert_published_once_gapless(stream, ids)
    assert healing_stack.worker is not None
    assert "re-driving" in healing_stack.worker.run_log()


def test_a_redis_restart_with_workers_stalled_loses_nothing(
    healing_stack: HealingStack, api_user: ApiUser, stream: Stream
) -> None:
    """Workers stalled, 300 accepted, Redis restarted empty, workers resumed: all 300 published once, in order."""
    worker = healing_stack.start_worker()
    healing_stack.start_beat()
    client = WsClient(f"{healing_stack.node.ws}/ws/streams/{stream.slug}/?after=0")
    try:
        # given: stalled workers and 300 accepted comments
        worker.pause()
        ids = _post_many(healing_stack.node.http, stream.slug, api_user.headers, 300)

        # when: Redis (broker, schedule marks and pub/sub) restarts with nothing in it
        healing_stack.redis.kill()
        healing_stack.redis.restart()

        def stuck_reported() -> subprocess.CompletedProcess[str] | None:
            answer = manage("stuck", env=healing_stack.env)
            return answer if answer.returncode == 1 else None

        stuck = wait_until(stuck_reported, timeout=30, what="manage.py stuck to report the stream")
        assert stream.slug in stuck.stdout
        worker.resume()

        # then: no operator needed; every comment is published once, gapless, and reaches the socket
        wait_published(ids, timeout=90)
        _assert_published_once_gapless(stream, ids)
        assert [e["seq"] for e in client.wait_for_seq(300, timeout=60)] == list(range(1, 301))
        assert manage("stuck", env=healing_stack.env).returncode == 0
    finally:
        client.close()


def test_outbox_tasks_lost_with_the_broker_are_sent_again(
    healing_stack: HealingStack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """A saga's step task lost after the broker took it: the outbox sends it again, the saga finishes."""
    # given: a saga accepted while no worker runs, its first step's message then lost
    response = http.post(
        f"{healing_stack.node.http}/api/v1/streams/{stream.slug}/comment-and-react",
        json={"body": "healed saga", "kind": "heart"},
        headers=api_user.headers,
    )
    assert response.status_code == 202, response.text
    run_id = response.json()["id"]
    wait_until(lambda: OutboxMessage.objects.filter(dispatched_at__isnull=False).exists(), timeout=10, what="hand-off")
    assert healing_stack.purge_queue() == 1

    # when: a worker and beat run
    healing_stack.start_worker()
    healing_stack.start_beat()

    # then: the step is sent again and the saga succeeds, every outbox row ending done
    wait_until(
        lambda: SagaRun.objects.get(id=run_id).state == SagaState.SUCCEEDED, timeout=60, what="the saga to finish"
    )
    wait_until(lambda: not OutboxMessage.objects.filter(done_at__isnull=True).exists(), timeout=20, what="outbox done")
    assert OutboxMessage.objects.filter(attempts__gte=2).exists()  # the lost one was sent twice


def test_stuck_work_shows_in_metrics_and_the_stuck_command(
    healing_stack: HealingStack, api_user: ApiUser, stream: Stream
) -> None:
    """/metrics reports the publish lag; manage.py stuck lists the stream, re-drives it on request, exit codes 1/0."""
    ids = _post_many(healing_stack.node.http, stream.slug, api_user.headers, 3)
    healing_stack.purge_queue()

    def lag() -> float:
        return healing_stack.node.metrics()["chorus_comments_pending_oldest_age_seconds"]

    wait_until(lambda: lag() >= REDRIVE_SECONDS, timeout=20, what="the publish lag to grow")
    report = manage("stuck", "--json", env=healing_stack.env)
    assert report.returncode == 1, report.stderr
    streams = json.loads(report.stdout)["streams"]
    assert [(s["stream"], s["pending"]) for s in streams] == [(stream.slug, 3)]

    # when: an operator re-drives it (no beat runs here) and a worker takes it
    redrive = manage("stuck", "--redrive", env=healing_stack.env)
    assert "re-drove 1 stream(s)" in redrive.stdout, redrive.stdout + redrive.stderr
    healing_stack.start_worker()

    # then
    wait_published(ids, timeout=30)
    assert manage("stuck", env=healing_stack.env).returncode == 0
    wait_until(lambda: lag() == 0, timeout=10, what="the publish lag to fall to 0")


def test_a_dead_letter_replay_lost_with_the_broker_is_sent_again(healing_stack: HealingStack, stream: Stream) -> None:
    """An operator replays a set-aside comment's dead letter; the replay's message is lost; it still publishes once."""
    # given: a comment that was set aside and dead-lettered, replayed while no worker runs
    comment = Comment.objects.create(
        stream=stream,
        author=UserFactory.create(),
        body="replayed",
        idempotency_key="k",
        request_fingerprint="f",
        publish_isolated=True,
    )
    letter = dead_letter_record(
        message_id=str(uuid.uuid4()),
        task_name=PUBLISH_TASK,
        args=[],
        kwargs={"comment_id": str(comment.id)},
        queue=healing_stack.env["CHORUS_TASK_QUEUE"],
        failure={"exception_type": "builtins.RuntimeError", "attempts": 3},
        routed_by="worker",
    )
    replay = manage("dlq", "replay", str(letter.id), env=healing_stack.env)
    assert replay.returncode == 0, replay.stderr
    assert healing_stack.purge_queue() == 1

    # when: a worker and beat run
    healing_stack.start_worker()
    healing_stack.start_beat()

    # then: the replay is sent again and the comment is published, once
    wait_published([str(comment.id)], timeout=60)
    assert StreamEvent.objects.filter(stream=stream, type="comment.created").count() == 1
    wait_until(lambda: not OutboxMessage.objects.filter(done_at__isnull=True).exists(), timeout=20, what="done")
