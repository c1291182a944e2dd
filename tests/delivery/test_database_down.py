"""With PostgreSQL down the API refuses with 503 and Retry-After instead of accepting anything."""

import signal

import httpx
import pytest

from tests.support.brokers import unique_queue
from tests.support.processes import AsgiNode, manage, wait_until
from tests.support.stores import PostgresServer

pytestmark = pytest.mark.django_db(transaction=True)

SETUP = """
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from realtime.services import stream_create
user = get_user_model().objects.create_user("dbdown", password="x")
print(Token.objects.create(user=user).key)
stream_create(slug="dbdown", title="DB down")
"""


def test_database_down_is_503_with_retry_after_and_recovers(http: httpx.Client) -> None:
    """A write while the database is down is a 503 with Retry-After; after restart the same request works."""
    postgres = PostgresServer.primary("db-down-postgres").start().wait_ready()
    try:
        env = {"DATABASE_URL": postgres.url(), "CHORUS_TASK_QUEUE": unique_queue()}
        assert manage("migrate", "-v0", env=env).returncode == 0
        created = manage("shell", "-c", SETUP, env=env)
        assert created.returncode == 0, created.stderr
        token = created.stdout.strip().splitlines()[-1]
        node = AsgiNode("db-down-node", env=env).start().wait_ready()
        try:
            url = f"{node.http}/api/v1/streams/dbdown/comments"
            headers = {"Authorization": f"Token {token}", "Idempotency-Key": "while-down"}
            assert (
                http.post(url, json={"body": "before"}, headers={**headers, "Idempotency-Key": "before"}).status_code
                == 202
            )

            postgres.kill(signal.SIGINT)  # PostgreSQL's "fast" shutdown: every connection is cut
            refused = http.post(url, json={"body": "while down"}, headers=headers)
            assert refused.status_code == 503
            assert int(refused.headers["Retry-After"]) > 0
            assert refused.json()["code"] == "service_unavailable"
            assert http.get(url).status_code == 503

            postgres.start().wait_ready()

            def accepted() -> httpx.Response | None:
                response = http.post(url, json={"body": "while down"}, headers=headers)
                return response if response.status_code == 202 else None

            retried = wait_until(accepted, timeout=30, what="the API to accept again")
            page = http.get(url, params={"after": 0}).json()
            assert retried.json()["status"] == "pending"
            assert page["results"] == []  # nothing publishes here (no worker): only acceptance is checked
        finally:
            node.stop()
    finally:
        postgres.remove()
