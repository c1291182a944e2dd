"""The transactional outbox and the dead-letter store."""

import uuid

from django.db import models


class OutboxMessage(models.Model):
    """A task to hand to Celery, written in the same transaction as the change that needs it.

    ``message_id`` becomes the Celery task id. The row stays open until the task has finished
    (``done_at``: succeeded, or handed to the dead-letter queue): "the broker took it" is not "it
    happened". Until then the sweep sends it again whenever ``redrive_at`` passes, so the task it
    names must be idempotent. The task itself pushes ``redrive_at`` forward while it runs and
    while it waits for a retry (``delivery.reliable``).
    """

    message_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    task_name = models.CharField(max_length=200)
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    dispatched_at = models.DateTimeField(null=True, blank=True, help_text="last handed to the broker")
    redrive_at = models.DateTimeField(null=True, help_text="sent again after this unless done by then")
    done_at = models.DateTimeField(null=True, blank=True, help_text="the task finished (or was dead-lettered)")
    attempts = models.PositiveIntegerField(default=0, help_text="times handed to the broker")
    last_error = models.TextField(blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["redrive_at"], name="outbox_open_idx", condition=models.Q(done_at__isnull=True))
        ]

    def __str__(self) -> str:
        return f"{self.task_name} {self.message_id}"


class DeadLetterStatus(models.TextChoices):
    OPEN = "open"
    REPLAYED = "replayed"
    DISCARDED = "discarded"


class DeadLetter(models.Model):
    """A task message that failed for good: kept for an admin to inspect, replay or discard."""

    message_id = models.CharField(max_length=64, unique=True)
    task_name = models.CharField(max_length=200, db_index=True)
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    queue = models.CharField(max_length=200, blank=True)
    exception_type = models.CharField(max_length=200, blank=True, db_index=True)
    exception_message = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    first_failed_at = models.DateTimeField(null=True, blank=True)
    last_failed_at = models.DateTimeField(null=True, blank=True, db_index=True)
    routed_by = models.CharField(max_length=32, blank=True, help_text="broker (dead-letter exchange) or worker")
    status = models.CharField(
        max_length=16, choices=DeadLetterStatus.choices, default=DeadLetterStatus.OPEN, db_index=True
    )
    status_changed_at = models.DateTimeField(null=True, blank=True)
    replayed_message_id = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-last_failed_at", "-id"]

    def __str__(self) -> str:
        return f"{self.task_name} {self.message_id} ({self.status})"
