"""Persisted saga state: one SagaRun per multi-step action, one SagaStep per step."""

import uuid

from django.conf import settings
from django.db import models


class SagaState(models.TextChoices):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"  # a step failed for good; everything done before it was undone
    COMPENSATION_FAILED = "compensation_failed"  # an undo failed for good: see the dead letters


class StepState(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"


class SagaRun(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    saga_type = models.CharField(max_length=100, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saga_runs")
    stream = models.ForeignKey("realtime.Stream", null=True, blank=True, on_delete=models.SET_NULL)
    input = models.JSONField(default=dict)
    state = models.CharField(max_length=32, choices=SagaState.choices, default=SagaState.RUNNING, db_index=True)
    generation = models.PositiveIntegerField(default=1, help_text="incremented by each user retry")
    idempotency_key = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "idempotency_key"], name="saga_user_idempotency_key_unique")
        ]

    def __str__(self) -> str:
        return f"{self.saga_type} {self.id} ({self.state})"


class SagaStep(models.Model):
    run = models.ForeignKey(SagaRun, on_delete=models.CASCADE, related_name="steps")
    index = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=100)
    state = models.CharField(max_length=32, choices=StepState.choices, default=StepState.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    compensation_attempts = models.PositiveIntegerField(default=0)
    compensation_error = models.TextField(blank=True)
    # Set while a worker holds the step; NULL means "free to claim" in a running/compensating state.
    claimed_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    compensated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "index"]
        constraints = [models.UniqueConstraint(fields=["run", "index"], name="saga_step_run_index_unique")]

    def __str__(self) -> str:
        return f"{self.run_id}#{self.index} {self.name} ({self.state})"
