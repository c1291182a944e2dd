"""Reads of sagas: the report a user (REST and WebSocket) and an operator see."""

import uuid
from typing import Any

from sagas.definitions import saga_definition
from sagas.models import SagaRun, SagaState, StepState

_SUMMARY = {
    SagaState.RUNNING: "in progress",
    SagaState.SUCCEEDED: "every step succeeded",
    SagaState.COMPENSATING: "a step failed for good; undoing the steps before it",
    SagaState.COMPENSATED: "a step failed for good; everything it had done was undone; you can retry",
    SagaState.COMPENSATION_FAILED: "a step failed and undoing it failed too; operators are alerted; you can retry",
}


def saga_get(*, run_id: uuid.UUID, user_id: int | None = None) -> SagaRun | None:
    runs = SagaRun.objects.filter(id=run_id)
    if user_id is not None:
        runs = runs.filter(user_id=user_id)
    return runs.first()


def saga_report(*, run: SagaRun) -> dict[str, Any]:
    """What happened, step by step: what succeeded, what failed and why, what was undone."""
    definition = saga_definition(run.saga_type)
    steps = []
    for row in run.steps.order_by("index"):
        step = definition.step(row.index)
        steps.append(
            {
                "index": row.index,
                "name": row.name,
                "description": step.description,
                "state": row.state,
                "attempts": row.attempts,
                "result": row.result,
                "error": row.error or None,
                "undone": row.state == StepState.COMPENSATED,
                "compensation_error": row.compensation_error or None,
            }
        )
    return {
        "id": str(run.id),
        "type": run.saga_type,
        "state": run.state,
        "summary": _SUMMARY[SagaState(run.state)],
        "retryable": run.state in (SagaState.COMPENSATED, SagaState.COMPENSATION_FAILED),
        "generation": run.generation,
        "steps": steps,
        "created_at": run.created_at.isoformat().replace("+00:00", "Z"),
        "updated_at": run.updated_at.isoformat().replace("+00:00", "Z"),
    }
