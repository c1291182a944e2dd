"""A worker keeps its PostgreSQL connections from one task to the next.

Celery's Django fix-up closes every connection, and in a prefork child the whole connection pool,
before and after each task (celery/celery#10554): a new PostgreSQL connection, about 5 ms, in the
way of every task that touches the database. ``project.celery`` hands connections back to the pool
instead.
"""

import uuid

import httpx
import pytest
from django.db import connection

from comments.services import PUBLISH_TASK
from project.celery import app
from realtime.models import Stream
from tests.conftest import ApiUser, Stack
from tests.support.api import post_comment, wait_published
from tests.support.processes import CeleryWorker, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def _worker_backends(application_name: str) -> set[tuple[int, object]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, backend_start FROM pg_stat_activity WHERE application_name = %s", [application_name]
        )
        return set(cursor.fetchall())


def _run_tasks(worker: CeleryWorker, comment_id: str, count: int) -> None:
    """``count`` database tasks: each re-broadcasts the (published) comment under its row lock."""
    done = worker.run_log().count("succeeded")
    for _ in range(count):
        app.send_task(PUBLISH_TASK, kwargs={"comment_id": comment_id})
    wait_until(lambda: worker.run_log().count("succeeded") >= done + count, timeout=60, what=f"{count} tasks")


def test_a_worker_serves_many_tasks_over_the_same_database_connections(
    live: Stack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    # This test's worker alone takes the tasks; the shared one is restarted after the test.
    live.worker.stop()
    name = f"chorus-reuse-{uuid.uuid4().hex[:8]}"  # libpq reads the connection's application_name from PGAPPNAME
    worker = CeleryWorker("worker-connections", env={"PGAPPNAME": name}).start().wait_ready()
    try:
        comment_id = post_comment(http, live.nodes[0].http, stream.slug, api_user.headers, "hello").json()["id"]
        wait_published([comment_id])
        _run_tasks(worker, comment_id, 10)
        before = _worker_backends(name)
        assert before, "the worker keeps no connection open between tasks"

        _run_tasks(worker, comment_id, 20)
        after = _worker_backends(name)
        # The same server processes (pid and start time) served the 20 tasks. At most one more pool
        # process of the worker connected meanwhile (its pool opens its first connection in the
        # background, and a request made before that is up opens a second one).
        assert before <= after, f"the worker's connections were replaced: {before} -> {after}"
        assert len(after) <= len(before) + 2
    finally:
        worker.stop()
