"""Running sagas: start, run a step, give up, compensate, retry, resume.

Every step and compensation runs in its own idempotent Celery task keyed by (saga id, step
index). A task first *claims* its step with a conditional UPDATE (state and ``claimed_at``), so a
redelivered message or a second worker does nothing while another holds the claim; an abandoned
claim (a killed worker) expires after ``CHORUS_SAGA_CLAIM_LEASE_SECONDS``. The next task is
written to the outbox in the same transaction that records the step's outcome, so a worker
killed between steps leaves nothing lost: the outbox (or the stalled-saga sweep) carries on.
"""

import dataclasses
import logging
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from delivery.faults import fault_point
from delivery.services import outbox_enqueue
from sagas.definitions import SagaContext, saga_definition
from sagas.models import SagaRun, SagaState, SagaStep, StepState

logger = logging.getLogger(__name__)

STEP_TASK = "sagas.tasks.saga_step_task"
COMPENSATION_TASK = "sagas.tasks.saga_compensation_task"


class SagaIdempotencyKeyReused(Exception):
    def __init__(self, run: SagaRun) -> None:
        super().__init__(f"idempotency key already used for saga {run.id}")
        self.run = run


class NothingToRetry(Exception):
    """The saga is not in a state with anything to retry."""


class StepStillRunning(Exception):
    """A step's action is running inside its claim: compensating now could not undo what it is doing."""


def _lease() -> timedelta:
    return timedelta(seconds=settings.CHORUS_SAGA_CLAIM_LEASE_SECONDS)


def _claimable(now: Any) -> Q:
    return Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - _lease())


def _notify(run_id: uuid.UUID) -> None:
    from sagas.notifications import saga_notify

    transaction.on_commit(lambda: saga_notify(run_id=run_id), robust=True)


def _enqueue(task: str, run_id: uuid.UUID, index: int) -> None:
    outbox_enqueue(task_name=task, kwargs={"run_id": str(run_id), "index": index})


def _context(run: SagaRun) -> SagaContext:
    results = {step.name: step.result for step in run.steps.all() if step.result is not None}
    return SagaContext(
        run_id=run.id,
        user_id=run.user_id,
        stream_id=run.stream_id,
        input=run.input,
        generation=run.generation,
        results=results,
    )


def _fault_subject(run: SagaRun) -> str:
    return " ".join(str(value) for value in run.input.values())


def describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


def saga_start(
    *, saga_type: str, user_id: int, stream_id: int | None, input: dict[str, Any], idempotency_key: str | None
) -> tuple[SagaRun, bool]:
    """Persist a new run with its steps and queue the first step; once per (user, idempotency key)."""
    definition = saga_definition(saga_type)
    key = idempotency_key or f"auto:{uuid.uuid4()}"
    try:
        with transaction.atomic():
            run = SagaRun.objects.create(
                saga_type=saga_type, user_id=user_id, stream_id=stream_id, input=input, idempotency_key=key
            )
            SagaStep.objects.bulk_create(
                [SagaStep(run=run, index=i, name=step.name) for i, step in enumerate(definition.steps)]
            )
            _enqueue(STEP_TASK, run.id, 0)
            _notify(run.id)
    except IntegrityError:
        existing = SagaRun.objects.get(user_id=user_id, idempotency_key=key)
        if existing.saga_type != saga_type or existing.input != input or existing.stream_id != stream_id:
            raise SagaIdempotencyKeyReused(existing) from None
        return existing, False
    return run, True


def saga_step_run(*, run_id: uuid.UUID, index: int) -> bool:
    """Run step ``index`` if it is its turn and nobody holds it; returns whether it ran.

    Raises what the action raised (the task decides between retrying and giving up).
    """
    now = timezone.now()
    claimed = (
        SagaStep.objects.filter(run_id=run_id, index=index, run__state=SagaState.RUNNING)
        .filter(Q(state=StepState.PENDING) | (Q(state=StepState.RUNNING) & _claimable(now)))
        .update(state=StepState.RUNNING, claimed_at=now, attempts=F("attempts") + 1, started_at=now)
    )
    if not claimed:
        return False
    run = SagaRun.objects.get(id=run_id)
    definition = saga_definition(run.saga_type)
    step = definition.step(index)
    try:
        fault_point(f"saga.{run.saga_type}.{step.name}", _fault_subject(run))
        result = step.action(_context(run))
        # "The action had its effect, then the call failed" (a timeout after the write).
        fault_point(f"saga.{run.saga_type}.{step.name}.after", _fault_subject(run))
    except Exception as exc:
        SagaStep.objects.filter(run_id=run_id, index=index).update(claimed_at=None, error=describe_error(exc))
        raise
    with transaction.atomic():
        done = SagaStep.objects.filter(run_id=run_id, index=index, state=StepState.RUNNING).update(
            state=StepState.SUCCEEDED, result=result, error="", claimed_at=None, finished_at=timezone.now()
        )
        if done:
            if index + 1 < len(definition.steps):
                _enqueue(STEP_TASK, run_id, index + 1)
                SagaRun.objects.filter(id=run_id).update(updated_at=timezone.now())
            else:
                SagaRun.objects.filter(id=run_id, state=SagaState.RUNNING).update(
                    state=SagaState.SUCCEEDED, updated_at=timezone.now()
                )
            _notify(run_id)
    if not done and _abandoned(run_id=run_id, index=index, generation=run.generation):
        _undo_abandoned_attempt(run=run, index=index, result=result)
    return bool(done)


def _abandoned(*, run_id: uuid.UUID, index: int, generation: int) -> bool:
    """The step was given up (and queued for compensation) while this attempt's action still ran:
    its claim expired and an operator compensated, or another attempt failed for good. Not when
    another attempt succeeded (the same idempotent effect) or a retry started a new generation."""
    undoing = [StepState.FAILED, StepState.COMPENSATING, StepState.COMPENSATED, StepState.COMPENSATION_FAILED]
    return SagaStep.objects.filter(run_id=run_id, index=index, state__in=undoing, run__generation=generation).exists()


def _undo_abandoned_attempt(*, run: SagaRun, index: int, result: Any) -> None:
    """Undo the effect of an action that committed after its step was abandoned.

    The step's compensation may already have run and found nothing to undo, so this attempt runs
    it again with its own result (compensations are idempotent and accept "already undone"). If
    that fails, the step and the run are marked ``compensation_failed``, which an operator or the
    user retries like any failed compensation.
    """
    step = saga_definition(run.saga_type).step(index)
    logger.warning("saga %s step %s (%s) finished after it was abandoned; undoing its effect", run.id, index, step.name)
    if step.compensation is None:
        return
    try:
        step.compensation(dataclasses.replace(_context(run), results={**_context(run).results, step.name: result}))
    except Exception as exc:
        logger.exception("saga %s: undoing the late effect of step %s failed", run.id, index)
        with transaction.atomic():
            SagaStep.objects.filter(run_id=run.id, index=index).update(
                state=StepState.COMPENSATION_FAILED, compensation_error=describe_error(exc), claimed_at=None
            )
            SagaRun.objects.filter(id=run.id, state__in=[SagaState.COMPENSATING, SagaState.COMPENSATED]).update(
                state=SagaState.COMPENSATION_FAILED, updated_at=timezone.now()
            )
            _notify(run.id)


def _compensate_next(run: SagaRun, *, at_or_below: int) -> None:
    """Queue the compensation of the highest step at or below ``at_or_below`` that may have an effect.

    A step that failed is compensated too: its action may have had its effect before failing (a
    timeout after the write), so its compensation must accept "never happened".
    """
    step = (
        run.steps.filter(index__lte=at_or_below, state__in=[StepState.SUCCEEDED, StepState.FAILED])
        .order_by("-index")
        .first()
    )
    if step is None:
        run.state = SagaState.COMPENSATED
    else:
        run.state = SagaState.COMPENSATING
        SagaStep.objects.filter(id=step.id).update(state=StepState.COMPENSATING, claimed_at=None)
        _enqueue(COMPENSATION_TASK, run.id, step.index)
    run.save(update_fields=["state", "updated_at"])
    _notify(run.id)


def saga_step_give_up(*, run_id: uuid.UUID, index: int, error: str) -> None:
    """Step ``index`` failed for good: record why, then undo it and everything before it."""
    with transaction.atomic():
        run = SagaRun.objects.select_for_update().get(id=run_id)
        failed = SagaStep.objects.filter(
            run_id=run_id, index=index, state__in=[StepState.PENDING, StepState.RUNNING]
        ).update(state=StepState.FAILED, error=error, claimed_at=None, finished_at=timezone.now())
        if not failed or run.state != SagaState.RUNNING:
            return
        logger.warning("saga %s step %s failed for good (%s); compensating", run_id, index, error)
        _compensate_next(run, at_or_below=index)


def saga_compensation_run(*, run_id: uuid.UUID, index: int) -> bool:
    """Undo step ``index`` if it is its turn and nobody holds it; returns whether it ran."""
    now = timezone.now()
    claimed = (
        SagaStep.objects.filter(run_id=run_id, index=index, state=StepState.COMPENSATING)
        .filter(run__state=SagaState.COMPENSATING)
        .filter(_claimable(now))
        .update(claimed_at=now, compensation_attempts=F("compensation_attempts") + 1)
    )
    if not claimed:
        return False
    run = SagaRun.objects.get(id=run_id)
    step = saga_definition(run.saga_type).step(index)
    try:
        fault_point(f"saga.{run.saga_type}.{step.name}.compensation", _fault_subject(run))
        if step.compensation is not None:
            step.compensation(_context(run))
    except Exception as exc:
        SagaStep.objects.filter(run_id=run_id, index=index).update(
            claimed_at=None, compensation_error=describe_error(exc)
        )
        raise
    with transaction.atomic():
        run = SagaRun.objects.select_for_update().get(id=run_id)
        done = SagaStep.objects.filter(run_id=run_id, index=index, state=StepState.COMPENSATING).update(
            state=StepState.COMPENSATED, claimed_at=None, compensated_at=timezone.now(), compensation_error=""
        )
        if done and run.state == SagaState.COMPENSATING:
            _compensate_next(run, at_or_below=index - 1)
    return bool(done)


def saga_compensation_give_up(*, run_id: uuid.UUID, index: int, error: str) -> None:
    """A compensation failed for good: the run needs an operator (its message is dead-lettered)."""
    with transaction.atomic():
        SagaStep.objects.filter(run_id=run_id, index=index, state=StepState.COMPENSATING).update(
            state=StepState.COMPENSATION_FAILED, compensation_error=error, claimed_at=None
        )
        SagaRun.objects.filter(id=run_id, state=SagaState.COMPENSATING).update(
            state=SagaState.COMPENSATION_FAILED, updated_at=timezone.now()
        )
        _notify(run_id)


def saga_retry(*, run_id: uuid.UUID) -> SagaRun:
    """Re-run only what failed.

    After a failed compensation: that compensation (and the ones below it) again. After a
    compensated failure: the steps whose effect is no longer in place, as a new generation (new
    idempotency keys, since the first attempt's effects were undone).
    """
    with transaction.atomic():
        run = SagaRun.objects.select_for_update().get(id=run_id)
        if run.state == SagaState.COMPENSATION_FAILED:
            failed = run.steps.filter(state=StepState.COMPENSATION_FAILED).order_by("-index").first()
        elif run.state == SagaState.COMPENSATED:
            failed = run.steps.exclude(state=StepState.SUCCEEDED).order_by("index").first()
        else:
            failed = None
        if failed is None:  # another state, or no step left in it (retried meanwhile)
            raise NothingToRetry(f"saga is {run.state}: nothing failed that can be retried")
        if run.state == SagaState.COMPENSATION_FAILED:
            SagaStep.objects.filter(id=failed.id).update(state=StepState.COMPENSATING, claimed_at=None)
            run.state = SagaState.COMPENSATING
            _enqueue(COMPENSATION_TASK, run.id, failed.index)
        else:
            run.generation += 1
            run.state = SagaState.RUNNING
            run.steps.exclude(state=StepState.SUCCEEDED).update(
                state=StepState.PENDING, result=None, claimed_at=None, finished_at=None, compensated_at=None
            )
            _enqueue(STEP_TASK, run.id, failed.index)
        run.save(update_fields=["state", "generation", "updated_at"])
        _notify(run.id)
    return run


def saga_resume(*, run_id: uuid.UUID) -> str:
    """Queue again whatever a running or compensating saga is waiting for (after a lost task)."""
    with transaction.atomic():
        run = SagaRun.objects.select_for_update().get(id=run_id)
        if run.state == SagaState.RUNNING:
            step = run.steps.exclude(state=StepState.SUCCEEDED).order_by("index").first()
            if step is None:
                return "nothing to resume"
            SagaStep.objects.filter(id=step.id, claimed_at__lt=timezone.now() - _lease()).update(claimed_at=None)
            _enqueue(STEP_TASK, run.id, step.index)
            action = f"step {step.index} ({step.name}) queued"
        elif run.state == SagaState.COMPENSATING:
            step = run.steps.filter(state=StepState.COMPENSATING).order_by("-index").first()
            if step is None:
                _compensate_next(run, at_or_below=run.steps.count() - 1)
                return "compensation continued"
            _enqueue(COMPENSATION_TASK, run.id, step.index)
            action = f"compensation of step {step.index} ({step.name}) queued"
        else:
            return f"saga is {run.state}: nothing to resume"
        SagaRun.objects.filter(id=run.id).update(updated_at=timezone.now())
    return action


def saga_compensate(*, run_id: uuid.UUID, reason: str = "compensated by an operator") -> str:
    """Abandon a running saga (or retry failed compensations) and undo what it did.

    Raises ``StepStillRunning`` while the current step's action runs inside its claim: its
    compensation could run before the action commits, find nothing and leave the effect behind.
    Once the claim has expired the worker is presumed dead and the step is abandoned; should its
    action still commit after all, the step undoes that itself (``_undo_abandoned_attempt``).
    """
    with transaction.atomic():
        run = SagaRun.objects.select_for_update().get(id=run_id)
        if run.state not in (SagaState.RUNNING, SagaState.COMPENSATION_FAILED):
            return f"saga is {run.state}: nothing to compensate"
        if run.state == SagaState.RUNNING:
            current = run.steps.exclude(state=StepState.SUCCEEDED).order_by("index").first()
            index = current.index if current is not None else run.steps.count() - 1
            if current is not None:
                now = timezone.now()
                # Conditional, so a worker claiming the step at this moment wins or loses cleanly.
                abandoned = (
                    SagaStep.objects.filter(id=current.id)
                    .filter(Q(state=StepState.PENDING) | (Q(state=StepState.RUNNING) & _claimable(now)))
                    .update(state=StepState.FAILED, error=reason, claimed_at=None)
                )
                if not abandoned:
                    raise StepStillRunning(_still_running(SagaStep.objects.get(id=current.id), now))
            _compensate_next(run, at_or_below=index)
            return "compensation started"
    saga_retry(run_id=run_id)
    return "failed compensation queued again"


def _still_running(step: SagaStep, now: Any) -> str:
    claimed = step.claimed_at or now
    left = max(0.0, (claimed + _lease() - now).total_seconds())
    return (
        f"step {step.index} ({step.name}) is running (claimed {(now - claimed).total_seconds():.0f}s ago): "
        f"not compensated. Try again once it has finished, or after its claim expires in {left:.0f}s "
        "(CHORUS_SAGA_CLAIM_LEASE_SECONDS), when its worker is presumed dead."
    )


def saga_ids_stalled(*, older_than_seconds: float, limit: int = 200) -> list[uuid.UUID]:
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    return list(
        SagaRun.objects.filter(state__in=[SagaState.RUNNING, SagaState.COMPENSATING], updated_at__lt=cutoff)
        .order_by("updated_at")
        .values_list("id", flat=True)[:limit]
    )
