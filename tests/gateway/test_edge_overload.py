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

import dj_database_url
import psycopg
import pytest
from django.conf import settings

from bench.http_load import Tally, burst_run, post_request
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


def _burst(node: ServedNode, slug: str, token: str, count: int, *, on_answer=None) -> Tally:  # type: ignore[no-untyped-def]
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
    served_node: ServedNode, api_user: ApiUser, stream
) -> None:  # type: ignore[no-untyped-def]
    """1,000 POSTs at once, each on its own connection: every one answered 202 or JSON 503 + Retry-After."""
    # when
    outcome = _burst(served_node, stream.slug, api_user.token, 1000)

    # then
    assert not outcome.failures, outcome.summary()
    assert set(outcome.statuses) <= {202, 503}, outcome.summary()
    assert not outcome.bad_refusals, outcome.bad_refusals[:5]
    assert "Traceback" not in served_node.log_text()[served_node.log_offset :]


def test_a_burst_the_node_can_absorb_is_accepted_not_shed(served_node: ServedNode, api_user: ApiUser, stream) -> None:  # type: ignore[no-untyped-def]
    """200 POSTs at once: the edge's own queueing is not overload, so all of them get 202."""
    outcome = _burst(served_node, stream.slug, api_user.token, 200)

    assert outcome.statuses[202] == 200, outcome.summary()


def test_a_burst_while_the_database_stalls_gets_202_or_503_never_500(
    served_node: ServedNode, api_user: ApiUser, stream
) -> None:  # type: ignore[no-untyped-def]
    """Inserts stall (a lock) while 60 POSTs wait: refusals are 503 + Retry-After; those that waited finish 202."""
    config = dj_database_url.parse(settings.DATABASES["default"]["NAME"] and os.environ["DATABASE_URL"])
    locker = psycopg.connect(
        host=config["HOST"], port=config["PORT"] or 5432, user=config["USER"], dbname=config["NAME"]
    )
    answered: list[int] = []
    result: dict[str, Tally] = {}
    try:
        # given: every comment insert waits behind a lock
        locker.execute("LOCK TABLE comments_comment IN ACCESS EXCLUSIVE MODE")
        burst = threading.Thread(
            target=lambda: result.setdefault(
                "outcome",
                _burst(served_node, stream.slug, api_user.token, 60, on_answer=lambda i, a: answered.append(a.status)),
            )
        )
        burst.start()

        # when: the node has had to refuse some of them, the database recovers
        wait_until(lambda: answered, timeout=60, what="the first refusals while the database stalls")
        locker.rollback()
        burst.join(timeout=120)
    finally:
        locker.close()

    # then
    outcome = result["outcome"]
    assert not outcome.failures, outcome.summary()
    assert set(outcome.statuses) <= {202, 503}, outcome.summary()
    assert not outcome.bad_refusals, outcome.bad_refusals[:5]
    assert outcome.statuses[202] >= 1, outcome.summary()
