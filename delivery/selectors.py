"""Reads of the delivery app: dead letters, and what the outbox still owes."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, QuerySet
from django.utils import timezone

from delivery.models import DeadLetter, DeadLetterStatus, OutboxMessage


def dead_letters(*, status: str | None = None, task_name: str | None = None) -> QuerySet[DeadLetter]:
    letters = DeadLetter.objects.all()
    if status:
        letters = letters.filter(status=status)
    if task_name:
        letters = letters.filter(task_name=task_name)
    return letters.order_by("id")


def dead_letter_counts() -> dict[str, int]:
    """Number of dead letters per status, every status present (zero included)."""
    counts = {status: 0 for status in DeadLetterStatus.values}
    for row in DeadLetter.objects.values("status").annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    return counts


@dataclass(frozen=True)
class OpenMessage:
    message_id: str
    task_name: str
    age_seconds: float
    attempts: int
    redrive_at: datetime | None
    last_error: str


def outbox_open(*, older_than_seconds: float = 0, limit: int = 100) -> list[OpenMessage]:
    """Outbox messages whose task has not finished, the oldest first."""
    now = timezone.now()
    rows = OutboxMessage.objects.filter(
        done_at__isnull=True, created_at__lte=now - timedelta(seconds=older_than_seconds)
    ).order_by("created_at")[:limit]
    return [
        OpenMessage(
            message_id=str(row.message_id),
            task_name=row.task_name,
            age_seconds=(now - row.created_at).total_seconds(),
            attempts=row.attempts,
            redrive_at=row.redrive_at,
            last_error=row.last_error,
        )
        for row in rows
    ]


def outbox_open_oldest_age() -> float:
    """Seconds the oldest unfinished outbox message has waited (0 if none)."""
    oldest = (
        OutboxMessage.objects.filter(done_at__isnull=True).order_by("created_at").values_list("created_at", flat=True)
    ).first()
    return 0.0 if oldest is None else max(0.0, (timezone.now() - oldest).total_seconds())
