"""Broker settings for fault tests that run against both Redis and RabbitMQ."""

import os
import uuid

RABBITMQ_URL = os.environ.get("CHORUS_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")


def unique_queue() -> str:
    """A task queue of its own, so a test's workers never take another test's messages."""
    return f"chorus-test-{uuid.uuid4().hex[:8]}"


def delete_queues(broker_url: str, queue: str) -> None:
    """Remove a test run's queues from a shared broker."""
    from kombu import Connection

    from delivery.queues import dead_letter_queue, task_queues

    with Connection(broker_url, connect_timeout=5) as connection:
        channel = connection.default_channel
        for q in [*task_queues(queue), dead_letter_queue(queue)]:
            try:
                q(channel).delete()
            except Exception:
                channel = connection.channel()
