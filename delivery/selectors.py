"""Reads of the delivery app."""

from django.db.models import Count, QuerySet

from delivery.models import DeadLetter, DeadLetterStatus


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
