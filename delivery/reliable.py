"""The base of every Chorus task: bounded retries with backoff, then the dead-letter queue.

Transient errors (anything but ``PermanentError``) are retried with exponential backoff and full
jitter, capped well under the broker's visibility timeout. After the last attempt, or at once for
a ``PermanentError``, the message is dead-lettered:

- on RabbitMQ the task rejects it without requeueing, and the broker routes it through the task
  queue's dead-letter exchange (``delivery.queues``);
- on Redis, which has no dead-letter exchange, the task publishes it to the same queue itself.

Either way ``delivery.worker.DeadLetterConsumer`` records it for the admin. Tasks built on this
must be idempotent: delivery is at least once and a dead letter may be replayed.

A task whose message came through the outbox reports on its row: started (do not re-send it for
``CHORUS_TASK_LEASE_SECONDS``), retrying (not before the retry is due), done (never again), so
the outbox sweep re-sends exactly the messages that were lost on the way.
"""

import logging
import random
from typing import Any

from celery import Task
from celery.exceptions import Reject, Retry
from django.conf import settings
from django.db import DatabaseError

from delivery.failures import failure_note
from delivery.queues import dead_letter_queue
from delivery.services import OUTBOX_HEADER, outbox_message_done, outbox_message_retrying, outbox_message_running

logger = logging.getLogger(__name__)

DEAD_LETTER_HEADER = "chorus-dead-letter"


class PermanentError(Exception):
    """Retrying cannot help (invalid data, a broken invariant): dead-letter at once."""


def retry_delay(retries: int) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**retries)]."""
    ceiling = min(settings.CHORUS_TASK_RETRY_BACKOFF_MAX, settings.CHORUS_TASK_RETRY_BACKOFF_BASE * 2**retries)
    return random.uniform(ceiling / 2, ceiling)


class ReliableTask(Task):
    abstract = True
    acks_late = True
    reject_on_worker_lost = True
    max_retries: int | None = None  # None: CHORUS_TASK_MAX_RETRIES

    def _max_retries(self) -> int:
        return self.max_retries if self.max_retries is not None else settings.CHORUS_TASK_MAX_RETRIES

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._outbox_report(outbox_message_running, lease_seconds=settings.CHORUS_TASK_LEASE_SECONDS)
        try:
            result = super().__call__(*args, **kwargs)
        except (Retry, Reject):
            raise
        except PermanentError as exc:
            return self._dead_letter(exc, args, kwargs)
        except Exception as exc:
            attempts = self.request.retries + 1
            details = failure_note(message_id=self._message_id(), exc=exc, attempts=attempts)
            if self.request.retries < self._max_retries():
                delay = retry_delay(self.request.retries)
                logger.warning(
                    "%s[%s] attempt %d failed (%s); retry in %.1fs", self.name, self.request.id, attempts, exc, delay
                )
                self._outbox_report(outbox_message_retrying, countdown=delay)
                try:
                    self.retry(exc=exc, countdown=delay, max_retries=self._max_retries())
                except Retry:
                    raise
                except Exception:
                    # The retry could not be published (broker down): hand the message back instead
                    # of letting the failure ack it away.
                    logger.exception("%s[%s] retry not published; requeueing", self.name, self.request.id)
                    raise Reject(exc, requeue=True) from None
            return self._dead_letter(exc, args, kwargs, details)
        self._outbox_report(outbox_message_done)
        return result

    def _outbox_report(self, report: Any, **arguments: Any) -> None:
        """Tell the outbox row of this message (if it came through the outbox) how it is going.

        Best effort: if the database cannot take it, the sweep may send the message once more,
        which the task's idempotency absorbs.
        """
        if self.request.is_eager or not getattr(self.request, OUTBOX_HEADER, None):
            return
        try:
            report(message_id=self._message_id(), **arguments)
        except DatabaseError as exc:
            logger.warning("%s[%s] could not update its outbox row: %s", self.name, self.request.id, exc)

    def on_final_failure(self, exc: BaseException, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """Called once retries are exhausted (or at once for a PermanentError).

        Return True when the failure is fully handled (the message is then acked, not
        dead-lettered); a task that only wants to record something returns False.
        """
        return False

    def _message_id(self) -> str:
        return str(self.request.id)

    def _dead_letter(
        self, exc: Exception, args: tuple[Any, ...], kwargs: dict[str, Any], details: dict[str, Any] | None = None
    ) -> None:
        if details is None:
            details = failure_note(message_id=self._message_id(), exc=exc, attempts=self.request.retries + 1)
        try:
            if self.on_final_failure(exc, args, kwargs):
                logger.warning("%s[%s] failed for good and was handled: %r", self.name, self.request.id, exc)
                self._outbox_report(outbox_message_done)
                return None
        except Exception:
            logger.exception("%s[%s] failure handler failed; dead-lettering", self.name, self.request.id)
        logger.error("%s[%s] dead-lettered after %s attempts: %r", self.name, self.request.id, details["attempts"], exc)
        if self._broker_has_dead_letter_exchange():
            self._outbox_report(outbox_message_done)  # from here the dead-letter queue holds it
            raise Reject(exc, requeue=False)
        try:
            self._publish_dead_letter(args, kwargs, details)
        except Exception:
            # Not recorded anywhere yet: give the message back to the queue rather than lose it.
            logger.exception("could not publish dead letter %s; requeueing it", self.request.id)
            raise Reject(exc, requeue=True) from None
        self._outbox_report(outbox_message_done)
        return None

    def _broker_has_dead_letter_exchange(self) -> bool:
        with self.app.connection_for_write() as connection:
            return connection.transport.driver_type == "amqp"

    def _publish_dead_letter(self, args: tuple[Any, ...], kwargs: dict[str, Any], details: dict[str, Any]) -> None:
        body = {
            "id": self._message_id(),
            "task": self.name,
            "args": list(args),
            "kwargs": kwargs,
            "queue": (self.request.delivery_info or {}).get("routing_key", ""),
            "failure": details,
        }
        dead_letter_publish(app=self.app, task_queue=settings.CHORUS_TASK_QUEUE, body=body)


def dead_letter_publish(*, app: Any, task_queue: str, body: dict[str, Any]) -> None:
    """Publish a dead letter to ``task_queue``'s dead-letter queue, in the format the worker's
    dead-letter consumer reads (``delivery.worker``): for brokers without a dead-letter exchange."""
    queue = dead_letter_queue(task_queue)
    with app.producer_or_acquire() as producer:
        producer.publish(
            body,
            exchange=queue.exchange,
            routing_key=queue.routing_key,
            declare=[queue],
            serializer="json",
            headers={DEAD_LETTER_HEADER: "worker"},
            retry=False,
        )
