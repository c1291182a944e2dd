"""Writes of the delivery app: enqueue through the outbox, relay it, record and act on dead letters."""

import logging
from datetime import datetime, timedelta
from typing import Any

import pybreaker
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from delivery.models import DeadLetter, DeadLetterStatus, OutboxMessage
from gateway.breakers import broker_breaker

logger = logging.getLogger(__name__)


def outbox_enqueue(
    *, task_name: str, kwargs: dict[str, Any] | None = None, args: list[Any] | None = None
) -> OutboxMessage:
    """Record a task in the caller's transaction; it goes to Celery after commit.

    Must run inside a transaction: the task exists if and only if the change that needs it
    commits. Delivery is at least once, so the task must be idempotent.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("outbox_enqueue must run inside the transaction of the change it belongs to")
    message = OutboxMessage.objects.create(task_name=task_name, args=args or [], kwargs=kwargs or {})
    transaction.on_commit(lambda: _relay_committed(message), robust=True)
    return message


def _send(message: OutboxMessage) -> None:
    from project.celery import app

    app.send_task(message.task_name, args=message.args, kwargs=message.kwargs, task_id=str(message.message_id))


def _record_failure(message: OutboxMessage, exc: Exception) -> None:
    logger.warning("broker did not take outbox message %s: %s", message.message_id, exc)
    OutboxMessage.objects.filter(id=message.id).update(
        attempts=F("attempts") + 1, last_error=f"{type(exc).__name__}: {exc}"[:2000]
    )


def _relay_committed(message: OutboxMessage) -> None:
    """Hand a message to the broker right after its transaction committed (on every accepted write).

    The row is in memory and the sweep leaves rows younger than its grace period alone, so this
    sends first and marks the row after: the task is on its way before any further round trip.
    The mark skips a row the sweep has claimed meanwhile (its transaction ran longer than the
    grace period, or the hosts' clocks differ): the sweep sends it again and marks it, and the
    idempotent task absorbs the duplicate. Nothing waits on the sweep's lock.
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
    with transaction.atomic():
        unclaimed = (
            OutboxMessage.objects.select_for_update(skip_locked=True)
            .filter(id=message.id, dispatched_at__isnull=True)
            .values_list("id", flat=True)
        )
        OutboxMessage.objects.filter(id__in=list(unclaimed)).update(
            dispatched_at=timezone.now(), attempts=F("attempts") + 1
        )


def outbox_relay(*, older_than_seconds: float = 0, limit: int = 500) -> int:
    """Hand undispatched outbox messages to the broker (the sweep); returns how many were sent.

    Rows are claimed with ``SELECT ... FOR UPDATE SKIP LOCKED``, so relays on many processes never
    wait for each other or send a row at the same time. A row is marked dispatched only after the
    broker took it; a crash in between sends it again later (at least once).
    """
    sent: list[int] = []
    with transaction.atomic():
        rows = OutboxMessage.objects.select_for_update(skip_locked=True).filter(dispatched_at__isnull=True)
        if older_than_seconds:
            rows = rows.filter(created_at__lt=timezone.now() - timedelta(seconds=older_than_seconds))
        for message in rows.order_by("id")[:limit]:
            try:
                broker_breaker.call(_send, message)
            except pybreaker.CircuitBreakerError:
                break
            except Exception as exc:
                _record_failure(message, exc)
                break
            sent.append(message.id)
        if sent:
            OutboxMessage.objects.filter(id__in=sent).update(dispatched_at=timezone.now(), attempts=F("attempts") + 1)
    return len(sent)


def outbox_purge_dispatched(*, older_than: timedelta = timedelta(days=1)) -> int:
    deleted, _ = OutboxMessage.objects.filter(dispatched_at__lt=timezone.now() - older_than).delete()
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
