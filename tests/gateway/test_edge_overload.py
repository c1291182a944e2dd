"""Overload at the HTTP edge: a node started as ``make run`` starts it answers every request.

Real nodes (``scripts/serve.sh``, uvicorn and daphne) and real concurrent clients, each on its own
connection. Whatever the load, a ``POST`` gets ``202`` or a ``503`` with ``Retry-After`` in the
API's JSON shape: never a ``500``, an HTML page, or a connection that is refused, reset or never
answered.
"""

import asyncio
import json
import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import dj_database_url
import psycopg
import pytest

from bench.http_load import Tally, burst_run, post_request
from realtime.models import Stream
from tests.conftest import ApiUser
from tests.support.processes import ServedNode, wait_until

SERVERS = ["uvicorn", "daphne"]


@pytest.fixture(scope="module", params=SERVERS)
def served_node(request: pytest.FixtureRequest, django_db_setup: None) -> Iterator[ServedNode]:
    node = ServedNode(f"edge-{request.param}", server=request.param).start()
    try:
        node.wait_ready()
        yield node
    finally:
        node.stop()


def _burst(node: ServedNode, slug: str, token: str, count: int, *, on_answer=None) -> Tally:
    run = uuid.uuid4().hex[:8]

    def make(i: int) -> bytes:
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Token {token}",
            "Idempotency-Key": f"{run}-{i}",
        }
        body = json.dumps({"body": f"burst {i}"}).encode()
        return post_request(host="127.0.0.1", port=node.port, path=f"/api/v1/streams/{slug}/comments", body=body,
                            headers=headers, keep_alive=False)  # fmt: skip

    return asyncio.run(burst_run("127.0.0.1", node.port, make, count=count, on_answer=on_answer))


def test_a_burst_far_over_the_database_pool_gets_only_202_or_503_with_retry_after(
    served_node: ServedNode, api_user: ApiUser, stream: Stream
) -> None:
    """1,000 POSTs at once, each on its own connection: every one answered 202 or JSON 503 + Retry-After."""
    # when
    outcome = _burst(served_node, stream.slug, api_user.token, 1000)

    # then
    assert not outcome.failures, outcome.summary()
    assert set(outcome.statuses) <= {202, 503}, outcome.summary()
    assert not outcome.bad_refusals, outcome.bad_refusals[:5]
    assert "Traceback" not in served_node.log_text()[served_node.log_offset :]


def test_a_burst_the_node_can_absorb_is_accepted_not_shed(
    served_node: ServedNode, api_user: ApiUser, stream: Stream
) -> None:
    """200 POSTs at once: the edge's own queueing is not overload, so all of them get 202."""
    outcome = _burst(served_node, stream.slug, api_user.token, 200)

    assert outcome.statuses[202] == 200, outcome.summary()


def test_a_burst_while_the_database_stalls_gets_202_or_503_never_500(
    served_node: ServedNode, api_user: ApiUser, stream: Stream
) -> None:
    """Inserts stall (a lock): what is being written waits for the database and ends 202; what
    arrives behind it waits at most ``CHORUS_HTTP_QUEUE_SECONDS`` and is refused 503 + Retry-After."""
    config = dj_database_url.parse(os.environ["DATABASE_URL"])
    connect: dict[str, Any] = {
        "host": config["HOST"],
        "port": config["PORT"] or 5432,
        "user": config["USER"],
        "dbname": config["NAME"],
    }
    locker, watcher = psycopg.connect(**connect), psycopg.connect(**connect, autocommit=True)
    answered: list[int] = []
    results: dict[str, Tally] = {}

    def wave(name: str, count: int) -> threading.Thread:
        def run() -> None:
            results[name] = _burst(
                served_node, stream.slug, api_user.token, count, on_answer=lambda i, a: answered.append(a.status)
            )

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    def inserts_waiting() -> bool:
        row = watcher.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE '%comments_comment%'"
        ).fetchone()
        return bool(row and row[0])

    try:
        # given: every comment insert waits behind a lock, and a first wave is stuck on it
        locker.execute("LOCK TABLE comments_comment IN ACCESS EXCLUSIVE MODE")
        first = wave("first", 20)
        wait_until(inserts_waiting, timeout=60, what="the first wave's insert waiting on the lock")

        # when: more arrive while the database stalls, then it recovers
        second = wave("second", 60)
        wait_until(lambda: answered, timeout=60, what="the first refusals while the database stalls")
        locker.rollback()
        first.join(timeout=120)
        second.join(timeout=120)
    finally:
        locker.close()
        watcher.close()

    # then
    for outcome in results.values():
        assert not outcome.failures, outcome.summary()
        assert set(outcome.statuses) <= {202, 503}, outcome.summary()
        assert not outcome.bad_refusals, outcome.bad_refusals[:5]
    statuses = [status for outcome in results.values() for status in outcome.statuses.elements()]
    assert 202 in statuses and 503 in statuses, [outcome.summary() for outcome in results.values()]
