"""A Celery worker SIGKILLed in the middle of a publish: after redelivery, published exactly once."""

import os
import signal

import psycopg
import pytest

from realtime.models import StreamEvent
from tests.support.api import post_comment, wait_published
from tests.support.processes import wait_until
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)


def _publish_blocked_on_stream_lock(conn: psycopg.Connection) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE realtime_stream%%'"
    ).fetchone()
    return bool(row and row[0])


def test_worker_killed_mid_task_publishes_exactly_once_after_redelivery(live, api_user, stream, http):
    """The task is killed inside its transaction; a new worker gets the message back and publishes once."""
    client = WsClient(f"{live.nodes[1].ws}/ws/streams/{stream.slug}/")
    with (
        psycopg.connect(os.environ["DATABASE_URL"]) as blocker,
        psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as observer,
    ):
        # given: the stream row is locked, so the publish task stops inside its transaction
        # (the same lock the sequencer takes: it does not block inserts referencing the stream)
        blocker.execute("SELECT id FROM realtime_stream WHERE id = %s FOR NO KEY UPDATE", [stream.id])
        response = post_comment(http, live.nodes[0].http, stream.slug, api_user.headers, "survives", "crash-1")
        assert response.status_code == 202
        wait_until(lambda: _publish_blocked_on_stream_lock(observer), timeout=20, what="task to block on the lock")

        # when: the whole worker (parent and children) is SIGKILLed mid-task
        live.worker.kill(signal.SIGKILL)
        blocker.rollback()

    # then: nothing was published by the dead worker; a new worker gets the message back
    assert StreamEvent.objects.filter(stream=stream).count() == 0
    live.restart_worker()
    wait_published([response.json()["id"]], timeout=90)
    assert StreamEvent.objects.filter(stream=stream).count() == 1

    sentinel = post_comment(http, live.nodes[0].http, stream.slug, api_user.headers, "after", "crash-2")
    wait_published([sentinel.json()["id"]])
    events = client.wait_for_seq(2)
    assert [(e["seq"], e["data"]["body"]) for e in events] == [(1, "survives"), (2, "after")]
    client.close()
