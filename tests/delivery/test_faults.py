"""Fault drills on real processes, against both brokers: nothing accepted is ever lost or doubled."""

import signal
from collections.abc import Callable

import httpx
import psycopg
import pytest
from django.db import connection

from comments.models import Comment, CommentStatus
from comments.services import COMMENT_CREATED, PUBLISH_TASK, comment_event_id
from delivery.models import DeadLetter, DeadLetterStatus
from realtime.models import Stream, StreamEvent
from tests.conftest import ApiUser
from tests.delivery.conftest import FaultStack, start_fault_stack
from tests.support.api import comment_seqs, post_comment, wait_published
from tests.support.brokers import RABBITMQ_URL, delete_queues
from tests.support.processes import CeleryBeat, manage, wait_until
from tests.support.proxy import TcpProxy
from tests.support.stores import RedisServer
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)

WAITING_PUBLISH = (
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
    "AND wait_event_type = 'Lock' AND query LIKE 'UPDATE realtime_stream%%'"
)


def _dsn() -> str:
    settings = connection.settings_dict
    return f"host={settings['HOST']} port={settings['PORT']} user={settings['USER']} dbname={settings['NAME']}"


def _blocked_publish_pid(observer: psycopg.Connection) -> int | None:
    row = observer.execute(WAITING_PUBLISH).fetchone()
    return row[0] if row else None


@pytest.mark.fault_env(CHORUS_FAULT_INJECT="comment_publish:poison")
def test_poison_message_is_dead_lettered_never_blocks_and_replays_once(
    fault_stack: FaultStack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """A task that always fails lands in the DLQ after N attempts; once fixed, replay publishes it once."""
    base = fault_stack.node.http
    poison = post_comment(http, base, stream.slug, api_user.headers, "a poison pill").json()["id"]
    fine = [post_comment(http, base, stream.slug, api_user.headers, f"fine {i}").json()["id"] for i in range(5)]

    wait_published(fine)
    # the poison was set aside from the stream's batches: it blocked nothing, and left no gap
    assert comment_seqs(Comment.objects.filter(id__in=fine)) == [1, 2, 3, 4, 5]
    assert Comment.objects.get(id=poison).publish_isolated
    letter = wait_until(
        lambda: DeadLetter.objects.filter(kwargs__comment_id=poison).first(), timeout=60, what="the dead letter"
    )
    assert letter.task_name == PUBLISH_TASK
    assert letter.attempts == 3  # the first try and CHORUS_TASK_MAX_RETRIES=2 retries
    assert letter.exception_type.endswith("InjectedFault")
    assert "injected fault" in letter.exception_message and "InjectedFault" in letter.traceback
    assert letter.first_failed_at is not None and letter.last_failed_at is not None
    assert letter.first_failed_at <= letter.last_failed_at
    assert letter.status == DeadLetterStatus.OPEN
    assert letter.routed_by == ("broker" if fault_stack.broker == "rabbitmq" else "worker")
    assert Comment.objects.get(id=poison).status == CommentStatus.PENDING

    # when: the bug is fixed and an operator replays the letter
    fault_stack.restart_worker(CHORUS_FAULT_INJECT="")
    replay = manage("dlq", "replay", str(letter.id), env=fault_stack.env)
    assert replay.returncode == 0, replay.stderr
    assert "replayed 1" in replay.stdout

    # then: it is published exactly once, and a second replay does nothing
    wait_published([poison])
    assert (
        StreamEvent.objects.filter(
            event_id=comment_event_id(Comment.objects.get(id=poison).id, COMMENT_CREATED)
        ).count()
        == 1
    )
    again = manage("dlq", "replay", str(letter.id), env=fault_stack.env)
    assert again.returncode == 1
    assert StreamEvent.objects.filter(stream=stream).count() == 6


def test_worker_killed_mid_task_publishes_exactly_once_after_redelivery(
    fault_stack: FaultStack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """The whole worker is SIGKILLed inside the task's transaction; a new worker publishes it once."""
    client = WsClient(f"{fault_stack.node.ws}/ws/streams/{stream.slug}/")
    with psycopg.connect(_dsn()) as blocker, psycopg.connect(_dsn(), autocommit=True) as observer:
        # given: the stream row is locked (the sequencer's own lock), so the task stops mid-transaction
        blocker.execute("SELECT id FROM realtime_stream WHERE id = %s FOR NO KEY UPDATE", [stream.id])
        response = post_comment(http, fault_stack.node.http, stream.slug, api_user.headers, "survives", "crash-1")
        assert response.status_code == 202
        wait_until(lambda: _blocked_publish_pid(observer), timeout=20, what="the task to block on the lock")
        # when: the worker and its children die at once
        fault_stack.worker.kill(signal.SIGKILL)
        blocker.rollback()

    assert StreamEvent.objects.filter(stream=stream).count() == 0
    fault_stack.restart_worker()
    wait_published([response.json()["id"]], timeout=90)
    sentinel = post_comment(http, fault_stack.node.http, stream.slug, api_user.headers, "after", "crash-2")
    wait_published([sentinel.json()["id"]])
    events = client.wait_for_seq(2)
    assert [(e["seq"], e["data"]["body"]) for e in events] == [(1, "survives"), (2, "after")]
    assert StreamEvent.objects.filter(stream=stream).count() == 2
    client.close()


def test_database_connection_dropped_mid_task_is_retried_and_published_once(
    fault_stack: FaultStack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """The worker's database connection is terminated mid-task: the task retries and publishes once."""
    with psycopg.connect(_dsn()) as blocker, psycopg.connect(_dsn(), autocommit=True) as observer:
        blocker.execute("SELECT id FROM realtime_stream WHERE id = %s FOR NO KEY UPDATE", [stream.id])
        response = post_comment(http, fault_stack.node.http, stream.slug, api_user.headers, "resilient")
        pid = wait_until(lambda: _blocked_publish_pid(observer), timeout=20, what="the task to block on the lock")
        observer.execute("SELECT pg_terminate_backend(%s)", [pid])
        blocker.rollback()

    wait_published([response.json()["id"]], timeout=60)
    assert StreamEvent.objects.filter(stream=stream).count() == 1
    assert "retry in" in fault_stack.worker.log_text()
    assert not DeadLetter.objects.exists()


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_broker_outage_while_posting_loses_nothing(
    broker: str, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """100 comments posted while the broker is down are accepted, then published once each, gapless."""
    # given: a stack whose broker the test can take away (a private Redis; RabbitMQ behind a proxy)
    take_down: Callable[[], object]
    bring_back: Callable[[], object]
    if broker == "redis":
        redis_server = RedisServer("broker-redis").start().wait_ready()
        url, extra = redis_server.url, {"REDIS_URL": redis_server.url}
        take_down, bring_back = redis_server.kill, redis_server.restart
    else:
        proxy = TcpProxy("127.0.0.1", 5672).restore()
        url, extra = RABBITMQ_URL.replace(":5672", f":{proxy.port}"), {}
        take_down, bring_back = proxy.cut, proxy.restore
    stack = start_fault_stack(broker, url, **extra)
    stack.start(CeleryBeat(f"beat-{broker}", env=stack.env))
    client = WsClient(f"{stack.node.ws}/ws/streams/{stream.slug}/")
    try:
        # when: the broker goes away while 100 comments are posted
        take_down()
        with httpx.Client(timeout=30) as outage_client:
            responses = [
                post_comment(outage_client, stack.node.http, stream.slug, api_user.headers, f"during outage {i}")
                for i in range(100)
            ]
        assert [r.status_code for r in responses] == [202] * 100
        ids = [r.json()["id"] for r in responses]
        assert Comment.objects.filter(stream=stream).count() == 100  # every 202 is stored
        # The broker really was away: (nearly) all wait. A nudge already on its way through a
        # connection the proxy had not yet cut may publish one or two; none may be lost.
        assert Comment.objects.filter(stream=stream, status=CommentStatus.PENDING).count() >= 90
        bring_back()

        # then: every comment is published exactly once, in a gapless sequence, and delivered live
        wait_published(ids, timeout=120)
        assert comment_seqs(Comment.objects.filter(stream=stream)) == list(range(1, 101))
        assert StreamEvent.objects.filter(stream=stream).count() == 100
        assert [e["seq"] for e in client.wait_for_seq(100, timeout=60)] == list(range(1, 101))
    finally:
        client.close()
        stack.stop()
        if broker == "redis":
            redis_server.stop()
        else:
            proxy.cut()
            delete_queues(RABBITMQ_URL, stack.env["CHORUS_TASK_QUEUE"])
