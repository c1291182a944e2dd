"""Service tier of sagas: the "comment and react" saga driven step by step through its services.

Each call is what one Celery task does (``sagas.tasks``), made here directly and in turn, with no
worker: where a service queues the next task, the test finds it in the outbox (written in the
same transaction) instead of running it. Failures are the real fault points
(``CHORUS_FAULT_INJECT``), switched on through the settings.
"""

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from pytest_django import Settings

from comments.models import Comment, CommentStatus
from delivery.faults import InjectedFault
from delivery.models import OutboxMessage
from reactions.selectors import comment_reaction_counts
from realtime.models import Stream, StreamEvent
from sagas.comment_and_react import NAME
from sagas.models import SagaRun, SagaState, SagaStep, StepState
from sagas.notifications import saga_notify
from sagas.selectors import saga_report
from sagas.services import (
    COMPENSATION_TASK,
    STEP_TASK,
    NothingToRetry,
    SagaIdempotencyKeyReused,
    StepStillRunning,
    saga_compensate,
    saga_compensation_give_up,
    saga_compensation_run,
    saga_ids_stalled,
    saga_resume,
    saga_retry,
    saga_start,
    saga_step_give_up,
    saga_step_run,
)
from tests.factories import StreamFactory, UserFactory
from tests.support.published import PublishedEvents

pytestmark = [pytest.mark.services, pytest.mark.django_db]

FAULT = f"saga.{NAME}"


def _user() -> User:
    return UserFactory.create(password=None)


def _start(body: str = "hello", kind: str = "heart", key: str | None = None) -> tuple[SagaRun, Stream, User]:
    stream, user = StreamFactory.create(slug=f"g-{uuid.uuid4().hex[:10]}"), _user()
    run, created = saga_start(
        saga_type=NAME, user_id=user.pk, stream_id=stream.id, input={"body": body, "kind": kind}, idempotency_key=key
    )
    assert created
    return run, stream, user


def _states(run: SagaRun) -> tuple[str, list[str]]:
    run.refresh_from_db()
    return run.state, list(run.steps.order_by("index").values_list("state", flat=True))


def _queued(run: SagaRun) -> list[tuple[str, int]]:
    """The saga's tasks written to the outbox, in order: ``(task, step index)``."""
    messages = OutboxMessage.objects.filter(kwargs__run_id=str(run.id)).order_by("id")
    return [(m.task_name, m.kwargs["index"]) for m in messages]


def _comment(run: SagaRun) -> Comment:
    result = SagaStep.objects.get(run=run, index=0).result
    assert result is not None
    return Comment.objects.get(id=result["comment_id"])


def test_a_saga_starts_once_per_key_with_its_first_step_queued() -> None:
    run, stream, user = _start(key="k")

    again, created = saga_start(
        saga_type=NAME,
        user_id=user.pk,
        stream_id=stream.id,
        input={"body": "hello", "kind": "heart"},
        idempotency_key="k",
    )
    with pytest.raises(SagaIdempotencyKeyReused):
        saga_start(
            saga_type=NAME,
            user_id=user.pk,
            stream_id=stream.id,
            input={"body": "bye", "kind": "heart"},
            idempotency_key="k",
        )

    assert (again.id, created) == (run.id, False)
    assert _states(run) == (SagaState.RUNNING, [StepState.PENDING, StepState.PENDING])
    assert _queued(run) == [(STEP_TASK, 0)]


def test_steps_run_in_turn_once_each_and_the_last_one_ends_the_saga() -> None:
    run, _, user = _start()

    assert saga_step_run(run_id=run.id, index=0) is True
    assert saga_step_run(run_id=run.id, index=0) is False  # a redelivered message does nothing
    comment = _comment(run)
    assert (comment.status, comment.seq, comment.author_id) == (CommentStatus.PUBLISHED, 1, user.pk)
    assert _queued(run) == [(STEP_TASK, 0), (STEP_TASK, 1)]

    assert saga_step_run(run_id=run.id, index=1) is True

    assert _states(run) == (SagaState.SUCCEEDED, [StepState.SUCCEEDED, StepState.SUCCEEDED])
    assert comment_reaction_counts(comment_id=comment.id) == {"heart": 1}
    assert _queued(run) == [(STEP_TASK, 0), (STEP_TASK, 1)]  # nothing after the last step
    report = saga_report(run=run)
    assert (report["summary"], report["retryable"]) == ("every step succeeded", False)
    assert [s["result"] for s in report["steps"]] == [
        {"comment_id": str(comment.id), "seq": 1},
        {"kind": "heart", "added": True},
    ]


def test_a_step_failing_for_good_undoes_the_steps_before_it_and_a_retry_runs_it_again(settings: Settings) -> None:
    run, stream, _ = _start(body="doomed")
    saga_step_run(run_id=run.id, index=0)
    first = _comment(run)
    settings.CHORUS_FAULT_INJECT = f"{FAULT}.react:doomed"

    with pytest.raises(InjectedFault):
        saga_step_run(run_id=run.id, index=1)  # the task retries, then gives up:
    saga_step_give_up(run_id=run.id, index=1, error="InjectedFault: no")
    assert _states(run) == (SagaState.COMPENSATING, [StepState.SUCCEEDED, StepState.COMPENSATING])
    assert saga_compensation_run(run_id=run.id, index=1) is True  # nothing to undo: accepted
    assert saga_compensation_run(run_id=run.id, index=1) is False
    assert saga_compensation_run(run_id=run.id, index=0) is True

    assert _states(run) == (SagaState.COMPENSATED, [StepState.COMPENSATED, StepState.COMPENSATED])
    assert _queued(run) == [(STEP_TASK, 0), (STEP_TASK, 1), (COMPENSATION_TASK, 1), (COMPENSATION_TASK, 0)]
    assert Comment.objects.get(id=first.id).status == CommentStatus.DELETED
    assert list(StreamEvent.objects.filter(stream=stream).order_by("seq").values_list("type", flat=True)) == [
        "comment.created",
        "comment.deleted",
    ]
    report = saga_report(run=run)
    assert report["retryable"] and report["steps"][1]["error"] == "InjectedFault: no"

    # when: the user retries once the cause is gone
    settings.CHORUS_FAULT_INJECT = ""
    saga_retry(run_id=run.id)
    assert _queued(run)[-1] == (STEP_TASK, 0)
    saga_step_run(run_id=run.id, index=0)
    saga_step_run(run_id=run.id, index=1)

    # then: a new generation made a new comment (the first one's effects were undone)
    run.refresh_from_db()
    assert (run.state, run.generation) == (SagaState.SUCCEEDED, 2)
    second = _comment(run)
    assert second.id != first.id and second.seq == 3
    assert comment_reaction_counts(comment_id=second.id) == {"heart": 1}
    with pytest.raises(NothingToRetry):
        saga_retry(run_id=run.id)


def test_a_compensation_failing_for_good_waits_for_a_retry_of_that_compensation(settings: Settings) -> None:
    run, _, _ = _start(body="sticky")
    saga_step_run(run_id=run.id, index=0)
    saga_step_give_up(run_id=run.id, index=1, error="gave up")
    saga_compensation_run(run_id=run.id, index=1)
    settings.CHORUS_FAULT_INJECT = f"{FAULT}.comment.compensation:sticky"

    with pytest.raises(InjectedFault):
        saga_compensation_run(run_id=run.id, index=0)
    saga_compensation_give_up(run_id=run.id, index=0, error="InjectedFault: stuck")
    assert _states(run) == (SagaState.COMPENSATION_FAILED, [StepState.COMPENSATION_FAILED, StepState.COMPENSATED])
    assert _comment(run).status == CommentStatus.PUBLISHED

    settings.CHORUS_FAULT_INJECT = ""
    saga_retry(run_id=run.id)
    assert _queued(run)[-1] == (COMPENSATION_TASK, 0)
    assert saga_compensation_run(run_id=run.id, index=0) is True

    assert _states(run) == (SagaState.COMPENSATED, [StepState.COMPENSATED, StepState.COMPENSATED])
    assert _comment(run).status == CommentStatus.DELETED


def test_an_operator_cannot_compensate_a_step_inside_its_claim_but_can_once_it_expired(settings: Settings) -> None:
    run, _, _ = _start()
    saga_step_run(run_id=run.id, index=0)
    step = SagaStep.objects.filter(run=run, index=1)
    step.update(state=StepState.RUNNING, claimed_at=timezone.now())  # a worker is running the reaction

    with pytest.raises(StepStillRunning):
        saga_compensate(run_id=run.id)
    step.update(claimed_at=timezone.now() - timedelta(seconds=settings.CHORUS_SAGA_CLAIM_LEASE_SECONDS + 1))
    outcome = saga_compensate(run_id=run.id)

    assert outcome == "compensation started"
    assert _states(run) == (SagaState.COMPENSATING, [StepState.SUCCEEDED, StepState.COMPENSATING])
    assert step.get().error == "compensated by an operator"
    assert _queued(run)[-1] == (COMPENSATION_TASK, 1)


def test_resume_queues_again_what_a_saga_waits_for_and_the_sweep_finds_it() -> None:
    run, _, _ = _start()
    saga_step_run(run_id=run.id, index=0)
    SagaRun.objects.filter(id=run.id).update(updated_at=timezone.now() - timedelta(minutes=5))

    assert run.id in saga_ids_stalled(older_than_seconds=60)
    assert saga_resume(run_id=run.id) == "step 1 (react) queued"
    assert _queued(run) == [(STEP_TASK, 0), (STEP_TASK, 1), (STEP_TASK, 1)]  # the step claims once
    assert run.id not in saga_ids_stalled(older_than_seconds=60)
    saga_step_run(run_id=run.id, index=1)
    assert saga_resume(run_id=run.id) == "saga is succeeded: nothing to resume"


def test_the_user_is_told_on_the_sagas_stream(published_events: PublishedEvents) -> None:
    run, stream, user = _start()
    saga_step_run(run_id=run.id, index=0)

    saga_notify(run_id=run.id)

    (told,) = published_events.wait_for(1, stream_id=stream.id, kind="user")
    assert (told.user_id, told.name) == (user.pk, f"saga:{run.id}")
    assert told.frame is not None
    sent: dict[str, Any] = told.frame["saga"]
    assert (sent["id"], sent["state"]) == (str(run.id), SagaState.RUNNING)
    assert [s["state"] for s in sent["steps"]] == [StepState.SUCCEEDED, StepState.PENDING]
