"""A Celery worker bootstep that records dead letters from the dead-letter queue.

It consumes raw messages (it never runs them) from ``<queue>.dead_letter``: either the copy a
task published itself (Redis broker) or the original message the broker routed there (RabbitMQ's
dead-letter exchange). Recording is an upsert keyed by the message id, so a redelivered dead
letter is recorded once.
"""

import logging
import time
from typing import Any

from celery import bootsteps
from kombu import Consumer, Message

from delivery.queues import dead_letter_queue

logger = logging.getLogger(__name__)


def parse_dead_letter(body: Any, headers: dict[str, Any], delivery_info: dict[str, Any]) -> dict[str, Any]:
    """Normalise both dead-letter formats into the fields of ``dead_letter_record``."""
    from delivery.failures import failure_lookup
    from delivery.reliable import DEAD_LETTER_HEADER

    if headers.get(DEAD_LETTER_HEADER) == "worker" and isinstance(body, dict):
        return {
            "message_id": str(body["id"]),
            "task_name": body["task"],
            "args": body.get("args") or [],
            "kwargs": body.get("kwargs") or {},
            "queue": body.get("queue", ""),
            "failure": body.get("failure") or {},
            "routed_by": "worker",
        }
    # A Celery protocol 2 message dead-lettered by the broker: body is [args, kwargs, embed].
    message_id = str(headers.get("id", ""))
    args, kwargs = ([], {})
    if isinstance(body, list | tuple) and len(body) >= 2:
        args, kwargs = list(body[0]), dict(body[1])
    deaths = headers.get("x-death") or [{}]
    return {
        "message_id": message_id,
        "task_name": str(headers.get("task", "")),
        "args": args,
        "kwargs": kwargs,
        "queue": str(deaths[0].get("queue", "")),
        "failure": failure_lookup(message_id=message_id),
        "routed_by": "broker",
    }


class DeadLetterConsumer(bootsteps.ConsumerStep):
    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.task_queue = parent.app.conf.task_default_queue

    def get_consumers(self, channel: Any) -> list[Consumer]:
        return [
            Consumer(
                channel,
                queues=[dead_letter_queue(self.task_queue)],
                callbacks=[self.on_message],
                accept=["json"],
                prefetch_count=10,
            )
        ]

    def on_message(self, body: Any, message: Message) -> None:
        from django.db import DatabaseError, close_old_connections

        from delivery.services import dead_letter_record

        try:
            fields = parse_dead_letter(body, message.headers or {}, message.delivery_info or {})
        except (KeyError, TypeError, ValueError):
            logger.exception("unreadable dead letter; recording it raw")
            fields = {
                "message_id": str((message.headers or {}).get("id") or message.delivery_tag),
                "task_name": "(unreadable)",
                "args": [],
                "kwargs": {"raw": repr(body)[:4000]},
                "queue": "",
                "failure": {},
                "routed_by": "unknown",
            }
        try:
            close_old_connections()
            dead_letter_record(**fields)
        except DatabaseError:
            logger.exception("could not record dead letter %s; it stays queued", fields["message_id"])
            time.sleep(1)  # do not spin while the database is away
            message.requeue()
            return
        message.ack()
