"""Saga tasks: one per step and one per compensation, each idempotent per (saga id, step)."""

import logging
import uuid
from typing import Any

from celery import shared_task
from django.conf import settings

from delivery.reliable import ReliableTask
from sagas.services import (
    describe_error,
    saga_compensation_give_up,
    saga_compensation_run,
    saga_ids_stalled,
    saga_resume,
    saga_step_give_up,
    saga_step_run,
)

logger = logging.getLogger(__name__)


class SagaStepTask(ReliableTask):
    abstract = True

    def on_final_failure(self, exc: BaseException, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        # A step that fails for good is not a dead letter: the saga compensates and reports it.
        saga_step_give_up(run_id=uuid.UUID(kwargs["run_id"]), index=int(kwargs["index"]), error=describe_error(exc))
        return True


class SagaCompensationTask(ReliableTask):
    abstract = True

    def on_final_failure(self, exc: BaseException, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        # Record it on the saga, and still dead-letter it: a failed undo needs an operator.
        saga_compensation_give_up(
            run_id=uuid.UUID(kwargs["run_id"]), index=int(kwargs["index"]), error=describe_error(exc)
        )
        return False


@shared_task(base=SagaStepTask)
def saga_step_task(run_id: str, index: int) -> None:
    saga_step_run(run_id=uuid.UUID(run_id), index=index)


@shared_task(base=SagaCompensationTask)
def saga_compensation_task(run_id: str, index: int) -> None:
    saga_compensation_run(run_id=uuid.UUID(run_id), index=index)


@shared_task(ignore_result=True)
def saga_resume_stalled_task() -> int:
    """Resume sagas that made no progress for a while (a task lost with a broker or a worker)."""
    ids = saga_ids_stalled(older_than_seconds=settings.CHORUS_SAGA_STALL_SECONDS)
    for run_id in ids:
        logger.warning("saga %s stalled: %s", run_id, saga_resume(run_id=run_id))
    return len(ids)
