"""Writes of the delivery app: enqueue through the outbox, relay it, record and act on dead letters."""

import logging
from datetime import datetime, timedelta
from typing import Any

import pybreaker
from celery import current_app
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from delivery.models import DeadLetter, DeadLetterStatus, OutboxMessage
from project.breakers import broker_breaker

logger = logging.getLogger(__name__)


# Marks a message that came through the outbox, so its task reports back on the row.
OUTBOX_HEADER = "chorus_outbox"
# Until the on-commit relay has handed a new message over, the sweep leaves it alone this long.
RELAY_GRACE = timedelta(seconds=1)
# A re-sent message that is still not done waits twice as long before the next re-send, up to this.
REDRIVE_BACKOFF_MAX = timedelta(minutes=10)


def _redrive_after() -> timedelta:
    return timedelta(seconds=settings.CHORUS_PUBLISH_REDRIVE_SECONDS)


def outbox_enqueue(
    *, task_name: str, kwargs: dict[str, Any] | None = None, args: list[Any] | None = None
) -> OutboxMessage:
    """Record a task in the caller's transaction; it goes to Celery after commit.

    Must run inside a transaction: the task exists if and only if the change that needs it
    commits. Delivery is at least once, until the task reports it finished, so the task must be
    idempotent.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("outbox_enqueue must run inside the transaction of the change it belongs to")
    message = OutboxMessage.objects.create(
        task_name=task_name, args=args or [], kwargs=kwargs or {}, redrive_at=timezone.now() + RELAY_GRACE
    )
    transaction.on_commit(lambda: _relay_committed(message), robust=True)
    return message


def _send(message: OutboxMessage) -> None:
    current_app.send_task(
        message.task_name,
        args=message.args,
        kwargs=message.kwargs,
        task_id=str(message.message_id),
        headers={OUTBOX_HEADER: "1"},
    )


def _record_failure(message: OutboxMessage, exc: Exception) -> None:
    logger.warning("broker did not take outbox message %s: %s", message.message_id, exc)
    OutboxMessage.objects.filter(id=message.id).update(
        attempts=F("attempts") + 1, last_error=f"{type(exc).__name__}: {exc}"[:2000]
    )


def _relay_committed(message: OutboxMessage) -> None:
    """Hand a message to the broker right after its transaction committed.

    Sends first and then records it and pushes the row's ``redrive_at`` out (the sweep leaves
    rows alone for ``RELAY_GRACE`` meanwhile). The update skips a row the sweep has claimed in
    between: the sweep sends it again, and the idempotent task absorbs the duplicate. Nothing
    waits on the sweep's lock.
    """
    try:
        # Behind the broker's circuit breaker: while the broker is down, requests do not each wait
        # out a connection timeout; the row stays for the sweep.
        broker_breaker.call(_send, message)
    except pybreaker.CircuitBreakerError:
        return
    except Exception as exc:  # kombu and redis-py raise many types for "broker down"
        _record_failure(message, exc)
        return
    now = timezone.now()
    with transaction.atomic():
        unclaimed = (
            OutboxMessage.objects.select_for_update(skip_locked=True).filter(id=message.id).values_list("id", flat=True)
        )
        # Never pull redrive_at in: the task may already have started and pushed it out.
        OutboxMessage.objects.filter(id__in=list(unclaimed)).update(
            dispatched_at=now, redrive_at=Greatest(F("redrive_at"), now + _redrive_after()), attempts=F("attempts") + 1
        )


def _redrive_backoff(attempts: int) -> timedelta:
    return min(REDRIVE_BACKOFF_MAX, _redrive_after() * 2 ** min(attempts, 10))


def outbox_relay(*, limit: int = 500) -> int:
    """Send every open outbox message whose ``redrive_at`` has passed (the sweep); returns how many.

    That is a message the broker never took (down at commit time, or we crashed), and one it took
    but whose task has not finished in time: lost with the broker's memory, purged, or with a
    worker that died. Rows are claimed with ``SELECT ... FOR UPDATE SKIP LOCKED``, so sweeps on
    many processes never wait for each other or send a row at the same time. Each re-send waits
    twice as long for the task as the one before, so a backlog is not multiplied.
    """
    sent: list[OutboxMessage] = []
    with transaction.atomic():
        rows = OutboxMessage.objects.select_for_update(skip_locked=True).filter(
            done_at__isnull=True, redrive_at__lte=timezone.now()
        )
        for message in rows.order_by("redrive_at")[:limit]:
            try:
                broker_breaker.call(_send, message)
            except pybreaker.CircuitBreakerError:
                break
            except Exception as exc:
                _record_failure(message, exc)
                break
            if message.attempts:
                logger.warning(
                    "outbox message %s (%s) not done in time: sent again", message.message_id, message.task_name
                )
            sent.append(message)
        now = timezone.now()
        for message in sent:
            OutboxMessage.objects.filter(id=message.id).update(
                dispatched_at=now, redrive_at=now + _redrive_backoff(message.attempts), attempts=F("attempts") + 1
            )
    return len(sent)


def outbox_message_running(*, message_id: str, lease_seconds: float) -> None:
    """The task of an outbox message started: do not send it again for ``lease_seconds``."""
    OutboxMessage.objects.filter(message_id=message_id, done_at__isnull=True).update(
        redrive_at=timezone.now() + timedelta(seconds=lease_seconds)
    )


def outbox_message_retrying(*, message_id: str, countdown: float) -> None:
    """The task failed and retries in ``countdown`` seconds: the re-drive waits for that retry."""
    OutboxMessage.objects.filter(message_id=message_id, done_at__isnull=True).update(
        redrive_at=timezone.now() + timedelta(seconds=countdown) + _redrive_after()
    )


def outbox_message_done(*, message_id: str) -> None:
    """The task finished (or its message went to the dead-letter queue): never send it again."""
    OutboxMessage.objects.filter(message_id=message_id, done_at__isnull=True).update(done_at=timezone.now())


def outbox_purge_done(*, older_than: timedelta = timedelta(days=1)) -> int:
    deleted, _ = OutboxMessage.objects.filter(done_at__lt=timezone.now() - older_than).delete()
    return deleted


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value
    return parse_datetime(str(value))


def dead_letter_record(
    *,
    message_id: str,
    task_name: str,
    args: list[Any],
    kwargs: dict[str, Any],
    queue: str,
    failure: dict[str, Any],
    routed_by: str,
) -> DeadLetter:
    """Store a dead letter; idempotent per message id (a redelivered dead letter changes nothing)."""
    attempts = int(failure.get("attempts") or 0)
    letter, created = DeadLetter.objects.get_or_create(
        message_id=message_id,
        defaults={
            "task_name": task_name,
            "args": args,
            "kwargs": kwargs,
            "queue": queue,
            "exception_type": str(failure.get("exception_type", ""))[:200],
            "exception_message": str(failure.get("exception_message", "")),
            "traceback": str(failure.get("traceback", "")),
            "attempts": attempts,
            "first_failed_at": _parse_time(failure.get("first_failed_at")) or timezone.now(),
            "last_failed_at": _parse_time(failure.get("last_failed_at")) or timezone.now(),
            "routed_by": routed_by,
        },
    )
    if created:
        logger.error("dead letter %s recorded: %s %s", letter.id, task_name, failure.get("exception_type", ""))
    return letter


def _claim(dead_letter_id: int, new_status: str) -> DeadLetter | None:
    claimed = DeadLetter.objects.filter(id=dead_letter_id, status=DeadLetterStatus.OPEN).update(
        status=new_status, status_changed_at=timezone.now()
    )
    return DeadLetter.objects.get(id=dead_letter_id) if claimed else None


@transaction.atomic
def dead_letter_replay(*, dead_letter_id: int) -> DeadLetter | None:
    """Send an open dead letter's task again, with its original arguments (so its idempotency key).

    Returns None if the letter is not open (already replayed or discarded, or unknown): a double
    click or two admins at once replay it once.
    """
    letter = _claim(dead_letter_id, DeadLetterStatus.REPLAYED)
    if letter is None:
        return None
    message = outbox_enqueue(task_name=letter.task_name, args=letter.args, kwargs=letter.kwargs)
    letter.replayed_message_id = message.message_id
    letter.save(update_fields=["replayed_message_id"])
    return letter


@transaction.atomic
def dead_letter_discard(*, dead_letter_id: int) -> DeadLetter | None:
    """Mark an open dead letter as dealt with, without running it. None if it was not open."""
    return _claim(dead_letter_id, DeadLetterStatus.DISCARDED)
