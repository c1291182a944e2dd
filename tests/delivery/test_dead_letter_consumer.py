"""The dead-letter consumer while PostgreSQL is down: it backs off without holding up its worker.

Every worker records what reaches the dead-letter queue (``delivery/worker.py``) from the
worker's own consumer loop, the loop that also takes tasks off the broker and answers remote
control. A dead letter that cannot be recorded must wait in the queue without stalling that loop.
"""

import signal
import socket
import uuid

from delivery.reliable import dead_letter_publish
from project.celery import app
from reactions.tasks import reaction_taps_flush_task
from tests.support.brokers import delete_queues, unique_queue
from tests.support.processes import CeleryWorker, manage, wait_until
from tests.support.stores import PostgresServer

LETTERS = 5


def _publish_dead_letters(queue: str, ids: list[str]) -> None:
    for message_id in ids:
        body = {"id": message_id, "task": "drill.task", "args": [], "kwargs": {}, "queue": queue, "failure": {}}
        dead_letter_publish(app=app, task_queue=queue, body=body)


def _recorded(postgres: PostgresServer) -> int:
    with postgres.connect("postgres") as connection:
        row = connection.execute("SELECT count(*) FROM delivery_deadletter").fetchone()
    assert row is not None
    return row[0]


def _pings(worker_name: str) -> bool:
    replies = app.control.ping(destination=[worker_name], timeout=1.0)
    return any(worker_name in reply for reply in replies or [])


def test_dead_letters_wait_out_a_database_outage_without_stalling_the_worker() -> None:
    """Database down, dead letters arriving: the worker still answers pings and runs other tasks; the
    dead letters stay queued and are recorded once the database is back."""
    postgres = PostgresServer.primary("dlq-consumer-postgres").start().wait_ready()
    queue = unique_queue()
    env = {
        "DATABASE_URL": postgres.url(),
        "CHORUS_TASK_QUEUE": queue,
        "CHORUS_REDIS_PREFIX": f"dlq-{queue}",  # nothing to flush: the flush task needs no database
    }
    worker = CeleryWorker("dlq-consumer-worker", env=env)
    broker_url = app.conf.broker_url
    try:
        assert manage("migrate", "-v0", env=env).returncode == 0
        worker.start().wait_ready()
        name = f"dlq-consumer-worker@{socket.gethostname()}"
        wait_until(lambda: _pings(name), timeout=20, what="the worker to answer pings")

        # given: the database goes down and dead letters arrive
        postgres.kill(signal.SIGINT)
        ids = [str(uuid.uuid4()) for _ in range(LETTERS)]
        _publish_dead_letters(queue, ids)
        wait_until(lambda: "could not record dead letter" in worker.run_log(), timeout=30, what="a failed record")

        # then: the worker's loop stays free, for remote control and for tasks that need no database
        for _ in range(5):
            assert _pings(name), "the worker did not answer a ping while dead letters waited"
        sent = [reaction_taps_flush_task.apply_async(queue=queue).id for _ in range(3)]
        wait_until(
            lambda: all(f"[{task_id}] succeeded" in worker.run_log() for task_id in sent),
            timeout=20,
            what="tasks to run while the database is down",
        )

        # when: the database is back, every dead letter is recorded, once
        postgres.start().wait_ready()
        wait_until(lambda: _recorded(postgres) == LETTERS, timeout=60, interval=0.5, what="the dead letters")
        with postgres.connect("postgres") as connection:
            recorded = {row[0] for row in connection.execute("SELECT message_id FROM delivery_deadletter")}
        assert recorded == set(ids)
    finally:
        worker.stop()
        postgres.remove()
        delete_queues(broker_url, queue)
