"""An operator's ``manage.py sagas compensate`` against a step whose action is still running.

A stack of its own, with a claim lease long enough for ``manage.py`` to start inside it on a busy
machine, and a step that outlives its lease (a slow call) next to one that never ends (a hang).
"""

import os
import signal
import uuid
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from django.test import Client
from django.utils import timezone

from comments.models import Comment, CommentStatus
from realtime.models import Stream, StreamEvent
from sagas.models import SagaStep
from tests.conftest import ApiUser
from tests.delivery.conftest import FaultStack, start_fault_stack
from tests.sagas.test_comment_and_react import _report, _start, _steps, _wait_state
from tests.support.processes import manage, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

SAGA = "saga.comment_and_react"
CLAIM_LEASE_SECONDS = 12
SLOW_SECONDS = CLAIM_LEASE_SECONDS + 13  # the lease, then time for the operator's command and the undo


@pytest.fixture(scope="module")
def compensate_stack(django_db_setup: None) -> Iterator[FaultStack]:
    faults = f"{SAGA}.react:hang-react:hang,{SAGA}.comment:slow-comment:delay{SLOW_SECONDS}"
    stack = start_fault_stack(
        "redis",
        os.environ["REDIS_URL"],
        CHORUS_FAULT_INJECT=faults,
        CHORUS_SAGA_CLAIM_LEASE_SECONDS=str(CLAIM_LEASE_SECONDS),
    )
    try:
        yield stack
    finally:
        stack.stop()


def _compensate(stack: FaultStack, saga_id: str) -> tuple[int, str]:
    done = manage("sagas", "compensate", saga_id, env=stack.env)
    return done.returncode, done.stdout + done.stderr


def _wait_running(http, stack, user, saga_id: str, step: str) -> SagaStep:
    wait_until(
        lambda: _steps(_report(http, stack, user, saga_id))[step]["state"] == "running",
        timeout=30,
        interval=0.02,
        what=f"step {step} to run",
    )
    return SagaStep.objects.get(run_id=uuid.UUID(saga_id), name=step)


def _wait_claim_expired(step: SagaStep) -> None:
    assert step.claimed_at is not None
    expiry = step.claimed_at + timedelta(seconds=CLAIM_LEASE_SECONDS)
    wait_until(lambda: timezone.now() > expiry, timeout=CLAIM_LEASE_SECONDS + 5, what="the claim to expire")


def test_compensate_is_refused_while_a_step_holds_a_live_claim(
    compensate_stack: FaultStack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """Step 2 hangs inside its claim: compensate is refused (exit 3, saying why) and changes nothing;
    once the claim has expired the step counts as abandoned and compensate undoes the saga."""
    started = _start(http, compensate_stack, stream, api_user, "hang-react")
    try:
        react = _wait_running(http, compensate_stack, api_user, started["id"], "react")

        # when: the operator compensates while the action is still running
        code, out = _compensate(compensate_stack, started["id"])

        # then: refused, with the reason; the saga goes on as it was
        assert code == 3, out
        assert "step 1 (react) is running" in out
        report = _report(http, compensate_stack, api_user, started["id"])
        assert report["state"] == "running" and _steps(report)["react"]["state"] == "running"
        assert Comment.objects.get(stream=stream).status == CommentStatus.PUBLISHED

        # when: the claim has expired (the worker is presumed dead), the real command compensates
        _wait_claim_expired(react)
        code, out = _compensate(compensate_stack, started["id"])
        assert code == 0 and "compensation started" in out, out
        _wait_state(http, compensate_stack, api_user, started["id"], states={"compensated"})
        assert Comment.objects.get(stream=stream).status == CommentStatus.DELETED
    finally:
        compensate_stack.worker.kill(signal.SIGKILL)  # its child still hangs in the action
        compensate_stack.restart_worker()


def test_a_step_that_commits_after_it_was_compensated_undoes_its_effect(
    compensate_stack: FaultStack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """Step 1 is slow and outlives its claim; the operator compensates meanwhile, which finds nothing to
    undo; when the action then publishes its comment, the step sees it was abandoned and deletes it."""
    started = _start(http, compensate_stack, stream, api_user, "slow-comment")
    comment = _wait_running(http, compensate_stack, api_user, started["id"], "comment")

    # when: the claim expired, the action is still running, and the operator compensates
    _wait_claim_expired(comment)
    code, out = _compensate(compensate_stack, started["id"])
    assert code == 0 and "compensation started" in out, out
    _wait_state(http, compensate_stack, api_user, started["id"], states={"compensated"})
    assert not Comment.objects.filter(stream=stream).exists()  # nothing to undo yet: the action runs on

    # then: the slow action commits its comment after all, and the step undoes it at once
    def made_and_undone() -> bool:
        comments = list(Comment.objects.filter(stream=stream))
        return bool(comments) and all(c.status == CommentStatus.DELETED for c in comments)

    wait_until(made_and_undone, timeout=30, what="the late comment to be made and deleted")
    assert StreamEvent.objects.filter(stream=stream, type="comment.deleted").count() == 1
    assert _report(http, compensate_stack, api_user, started["id"])["state"] == "compensated"


def test_the_admin_action_refuses_a_step_with_a_live_claim_and_says_why(
    client: Client, api_user: ApiUser, stream: Stream
) -> None:
    """The admin's "compensate" on a saga whose step a worker holds leaves it alone, with a warning."""
    from sagas.models import SagaRun, SagaState, StepState
    from tests.factories import UserFactory

    # given: a run whose first step a worker claimed just now (rows only: no task is queued)
    run = SagaRun.objects.create(
        saga_type="comment_and_react",
        user=api_user.user,
        stream=stream,
        input={"body": "held", "kind": "heart"},
        idempotency_key="admin-live-claim",
    )
    SagaStep.objects.create(run=run, index=0, name="comment", state=StepState.RUNNING, claimed_at=timezone.now())
    SagaStep.objects.create(run=run, index=1, name="react")
    client.force_login(UserFactory.create(is_staff=True, is_superuser=True))

    # when
    page = client.post(
        "/admin/sagas/sagarun/", {"action": "compensate_selected", "_selected_action": [run.id]}, follow=True
    )

    # then
    assert "step 0 (comment) is running" in page.content.decode()
    assert SagaRun.objects.get(id=run.id).state == SagaState.RUNNING
    assert SagaStep.objects.get(run=run, index=0).state == StepState.RUNNING
