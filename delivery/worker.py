"""A Celery worker bootstep that records dead letters from the dead-letter queue.

It consumes raw messages (it never runs them) from ``<queue>.dead_letter``: either the copy a
task published itself (Redis broker) or the original message the broker routed there (RabbitMQ's
dead-letter exchange). Recording is an upsert keyed by the message id, so a redelivered dead
letter is recorded once.

The consumer runs in the worker's consumer loop, the loop that also takes tasks off the broker,
sends heartbeats and answers remote control, so it never waits on the database there: a writer
thread records each letter, and the loop acks it (or requeues it) from a timer. When a write
fails (the database is down) the letter is requeued and the consumer stops taking dead letters
for a backoff (doubling from ``BACKOFF_FIRST_SECONDS`` up to ``BACKOFF_MAX_SECONDS``); letters
wait in the broker meanwhile.
"""

import logging
import queue
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from celery import bootsteps
from kombu import Consumer, Message

from delivery.queues import dead_letter_queue

logger = logging.getLogger(__name__)

SETTLE_SECONDS = 0.25  # how often the consumer loop acks or requeues what the writer finished
BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0


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


def _unreadable(body: Any, message: Message) -> dict[str, Any]:
    logger.exception("unreadable dead letter; recording it raw")
    return {
        "message_id": str((message.headers or {}).get("id") or message.delivery_tag),
        "task_name": "(unreadable)",
        "args": [],
        "kwargs": {"raw": repr(body)[:4000]},
        "queue": "",
        "failure": {},
        "routed_by": "unknown",
    }


def _record(fields: dict[str, Any]) -> bool:
    """Record one dead letter (on the writer thread); False if the database could not take it."""
    from django.db import DatabaseError, close_old_connections

    from delivery.services import dead_letter_record

    try:
        close_old_connections()
        dead_letter_record(**fields)
    except DatabaseError:
        logger.exception("could not record dead letter %s; it stays queued", fields["message_id"])
        return False
    return True


class DeadLetterConsumer(bootsteps.ConsumerStep):
    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.task_queue = parent.app.conf.task_default_queue
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dead-letter-writer")
        self._written: queue.SimpleQueue[tuple[Message, bool]] = queue.SimpleQueue()
        self._timers: list[Any] = []
        self._resume_entry: Any = None
        self._paused = False
        self._backoff = 0.0

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

    def start(self, c: Any) -> None:
        self._paused = False
        super().start(c)
        self._timer = c.timer
        self._timers.append(c.timer.call_repeatedly(SETTLE_SECONDS, self._settle))

    def stop(self, c: Any) -> None:
        self._cancel_timers()
        super().stop(c)

    def shutdown(self, c: Any) -> None:
        self._cancel_timers()
        super().shutdown(c)
        self._writer.shutdown(wait=False)

    def _cancel_timers(self) -> None:
        for entry in [*self._timers, self._resume_entry]:
            if entry is not None:
                entry.cancel()
        self._timers.clear()
        self._resume_entry = None

    def on_message(self, body: Any, message: Message) -> None:
        if self._paused:  # delivered just before the pause: back to the queue, untouched
            message.requeue()
            return
        try:
            fields = parse_dead_letter(body, message.headers or {}, message.delivery_info or {})
        except (KeyError, TypeError, ValueError):
            fields = _unreadable(body, message)
        self._writer.submit(lambda: self._written.put((message, _record(fields))))

    def _settle(self) -> None:
        """On the consumer loop (a timer): ack what was recorded, requeue what was not."""
        recorded_any = failed = False
        while True:
            try:
                message, recorded = self._written.get_nowait()
            except queue.Empty:
                break
            recorded_any, failed = recorded_any or recorded, failed or not recorded
            try:
                if recorded:
                    message.ack()
                else:
                    message.requeue()
            except Exception:  # its channel is gone (a broker reconnect): the broker delivers it again
                logger.warning("dead letter %s not settled; it will be delivered again", message.delivery_tag)
        if failed:
            if not self._paused:
                self._pause()
        elif recorded_any:
            self._backoff = 0.0

    def _pause(self) -> None:
        self._paused = True
        self._backoff = min(BACKOFF_MAX_SECONDS, max(BACKOFF_FIRST_SECONDS, self._backoff * 2))
        for consumer in self.consumers or []:
            consumer.cancel()
        logger.warning("dead-letter consumer paused for %.0fs (database unavailable)", self._backoff)
        self._resume_entry = self._timer.call_after(self._backoff, self._resume)

    def _resume(self) -> None:
        self._paused = False
        for consumer in self.consumers or []:
            consumer.consume()
