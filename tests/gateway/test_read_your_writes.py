"""Read-your-writes against a real streaming replica whose replay the test pauses."""

import httpx
import pytest
from django.db import connections, transaction
from django.test import RequestFactory

from gateway.db_router import PRIMARY, REPLICA, PrimaryReplicaRouter, request_scope_enter, request_scope_exit
from realtime.models import Stream
from tests.gateway.conftest import PrivateDatabase
from tests.support.processes import AsgiNode, wait_until
from tests.support.stores import PostgresServer, RedisServer


def test_writer_reads_their_write_on_the_primary_while_others_read_the_lagging_replica(
    private_database: PrivateDatabase, http: httpx.Client
) -> None:
    """Replay paused: the writer sees the new comment, another user gets 404 until replay resumes."""
    primary = private_database.server
    replica = PostgresServer.replica_of(primary, "gw-replica").start().wait_ready()
    broker = RedisServer("gw-ryw-broker").start().wait_ready()  # no worker: the comment stays pending
    env = {
        "DATABASE_URL": private_database.url,
        "DATABASE_REPLICA_URL": replica.url("chorus"),
        "CELERY_BROKER_URL": broker.url,
        "CHORUS_READ_YOUR_WRITES_SECONDS": "60",
    }
    node = AsgiNode("gw-ryw-node", env=env).start()
    writer = {"Authorization": f"Token {private_database.tokens['writer']}"}
    reader = {"Authorization": f"Token {private_database.tokens['reader']}"}
    try:
        node.wait_ready()
        with replica.connect("chorus") as standby:
            # given: a replica that has everything so far, then stops replaying
            assert standby.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
            standby.execute("SELECT pg_wal_replay_pause()")
            wait_until(
                lambda: standby.execute("SELECT pg_get_wal_replay_pause_state()").fetchone() == ("paused",),
                timeout=10,
                what="replay paused",
            )

            # when: the writer posts a comment
            accepted = http.post(
                f"{node.http}/api/v1/streams/{private_database.slug}/comments", json={"body": "mine"}, headers=writer
            )
            assert accepted.status_code == 202
            status_url = f"{node.http}/api/v1/comments/{accepted.json()['id']}"

            # then: the writer reads it (primary), the reader does not yet (the paused replica)
            assert http.get(status_url, headers=writer).status_code == 200
            assert http.get(status_url, headers=reader).status_code == 404
            assert http.get(status_url).status_code == 404  # anonymous reads use the replica too

            # and once replay resumes, everyone sees it
            standby.execute("SELECT pg_wal_replay_resume()")
            wait_until(
                lambda: http.get(status_url, headers=reader).status_code == 200, timeout=15, what="replica catch-up"
            )
    finally:
        node.stop()
        broker.stop()
        replica.remove()


@pytest.mark.django_db(transaction=True)
def test_reads_outside_a_request_or_inside_a_transaction_use_the_primary(rf: RequestFactory) -> None:
    """Tasks, consumers and commands have no request scope: the primary; so do transactions."""
    router = PrimaryReplicaRouter()
    assert router.db_for_read(Stream) == PRIMARY
    connections.settings[REPLICA] = {**connections.settings[PRIMARY]}
    try:
        token = request_scope_enter(rf.get("/api/v1/streams/x/comments"))
        try:
            assert router.db_for_read(Stream) == REPLICA
            with transaction.atomic():
                assert router.db_for_read(Stream) == PRIMARY
            assert router.db_for_write(Stream) == PRIMARY
            assert router.db_for_read(Stream) == PRIMARY  # this request wrote: pinned
        finally:
            request_scope_exit(token)
        assert router.db_for_read(Stream) == PRIMARY
    finally:
        del connections.settings[REPLICA]
