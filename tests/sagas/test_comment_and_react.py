"""The "comment and react" saga on real processes: success, a failure at every step and in every
compensation, a worker killed between steps, retries, and the report the user sees."""

import signal
import uuid

import httpx
import pytest

from comments.models import Comment, CommentStatus
from delivery.models import DeadLetter
from reactions.models import CommentReaction
from realtime.models import Stream, StreamEvent
from sagas.comment_and_react import delete_comment, remove_reaction
from sagas.definitions import SagaContext
from sagas.models import SagaRun
from tests.conftest import ApiUser
from tests.delivery.conftest import FaultStack
from tests.support.processes import manage, wait_until
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)

FINAL = {"succeeded", "compensated", "compensation_failed"}


def _start(http, stack, stream, user, body, kind="heart", key=None):
    headers = {**user.headers, "Idempotency-Key": key or str(uuid.uuid4())}
    response = http.post(
        f"{stack.node.http}/api/v1/streams/{stream.slug}/comment-and-react",
        json={"body": body, "kind": kind},
        headers=headers,
    )
    assert response.status_code == 202, response.text
    return response.json()


def _report(http, stack, user, saga_id):
    return http.get(f"{stack.node.http}/api/v1/sagas/{saga_id}", headers=user.headers).json()


def _wait_state(http, stack, user, saga_id, states=FINAL, timeout=60):
    return wait_until(
        lambda: (r := _report(http, stack, user, saga_id))["state"] in states and r,
        timeout=timeout,
        what=f"saga {saga_id} to reach {states}",
    )


def _steps(report):
    return {step["name"]: step for step in report["steps"]}


def _live_reactions(comment_id):
    return CommentReaction.objects.filter(comment_id=comment_id, removed_at__isnull=True).count()


def test_success_reports_every_step_and_reaches_the_users_socket(
    saga_stack: FaultStack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """Both steps succeed; the report and a WebSocket frame to the user (only) say so."""
    mine = WsClient(f"{saga_stack.node.ws}/ws/streams/{stream.slug}/?token={api_user.token}")
    theirs = WsClient(f"{saga_stack.node.ws}/ws/streams/{stream.slug}/")
    started = _start(http, saga_stack, stream, api_user, "great goal")
    report = _wait_state(http, saga_stack, api_user, started["id"])

    assert report["state"] == "succeeded" and not report["retryable"]
    steps = _steps(report)
    assert steps["comment"]["state"] == steps["react"]["state"] == "succeeded"
    comment_id = steps["comment"]["result"]["comment_id"]
    assert Comment.objects.get(id=comment_id).status == CommentStatus.PUBLISHED
    assert _live_reactions(comment_id) == 1
    frame = mine.wait_for(
        lambda frames: next((f for f in frames if f.get("type") == "saga" and f["saga"]["state"] == "succeeded"), None),
        timeout=20,
        what="the saga frame",
    )
    assert frame["saga"]["id"] == started["id"]
    assert not [f for f in theirs.frames if f.get("type") == "saga"]
    mine.close()
    theirs.close()


def test_same_idempotency_key_starts_one_saga(
    saga_stack: FaultStack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    first = _start(http, saga_stack, stream, api_user, "once", key="saga-key")
    second = _start(http, saga_stack, stream, api_user, "once", key="saga-key")
    assert first["id"] == second["id"]
    assert SagaRun.objects.count() == 1


def test_reaction_failing_for_good_deletes_the_comment_and_says_so(
    saga_stack: FaultStack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """The reaction fails for good: the comment is compensated (deleted, comment.deleted broadcast)."""
    watcher = WsClient(f"{saga_stack.node.ws}/ws/streams/{stream.slug}/?after=0")
    report = _wait_state(http, saga_stack, api_user, _start(http, saga_stack, stream, api_user, "fail-react")["id"])

    assert report["state"] == "compensated" and report["retryable"]
    steps = _steps(report)
    assert steps["react"]["state"] == "compensated" and "InjectedFault" in steps["react"]["error"]
    assert steps["react"]["attempts"] == 2  # the first try and one retry
    assert steps["comment"]["state"] == "compensated" and steps["comment"]["undone"]
    comment_id = steps["comment"]["result"]["comment_id"]
    assert Comment.objects.get(id=comment_id).status == CommentStatus.DELETED
    events = watcher.wait_for(
        lambda frames: (
            [f["event"] for f in frames if f.get("type") == "event"] == ["comment.created", "comment.deleted"]
        ),
        timeout=20,
        what="comment.created then comment.deleted",
    )
    assert events
    assert not DeadLetter.objects.exists()
    watcher.close()


def test_comment_step_failing_leaves_nothing_behind(
    saga_stack: FaultStack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    report = _wait_state(http, saga_stack, api_user, _start(http, saga_stack, stream, api_user, "fail-comment")["id"])
    steps = _steps(report)
    assert report["state"] == "compensated"
    assert steps["comment"]["state"] == "compensated" and "InjectedFault" in steps["comment"]["error"]
    assert steps["react"]["state"] == "pending"
    assert not Comment.objects.filter(stream=stream).exclude(status=CommentStatus.DELETED).exists()


def test_failure_after_the_reactions_side_effect_is_undone_too(
    saga_stack: FaultStack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """The reaction was written, then the step failed: its compensation removes it anyway."""
    report = _wait_state(
        http, saga_stack, api_user, _start(http, saga_stack, stream, api_user, "fail-after-react")["id"]
    )
    steps = _steps(report)
    assert report["state"] == "compensated"
    comment_id = steps["comment"]["result"]["comment_id"]
    assert _live_reactions(comment_id) == 0
    assert CommentReaction.objects.filter(comment_id=comment_id).exists()  # it had happened
    assert Comment.objects.get(id=comment_id).status == CommentStatus.DELETED


@pytest.mark.parametrize(
    ("body", "broken"), [("fail-react fail-undo-comment", "comment"), ("fail-react fail-undo-react", "react")]
)
def test_failed_compensation_is_dead_lettered_reported_and_retryable(
    saga_stack: FaultStack, api_user: ApiUser, stream: Stream, http: httpx.Client, body, broken
) -> None:
    """A compensation that fails for good is never silent: dead letter, report, then a retry fixes it."""
    started = _start(http, saga_stack, stream, api_user, body)
    report = _wait_state(http, saga_stack, api_user, started["id"])
    assert report["state"] == "compensation_failed" and report["retryable"]
    assert _steps(report)[broken]["state"] == "compensation_failed"
    assert "InjectedFault" in _steps(report)[broken]["compensation_error"]
    letter = wait_until(
        lambda: DeadLetter.objects.filter(
            task_name="sagas.tasks.saga_compensation_task", kwargs__run_id=started["id"]
        ).first(),
        timeout=30,
        what="the dead letter",
    )
    assert letter.attempts == 2

    # when: the compensation is fixed and the user retries
    saga_stack.restart_worker(CHORUS_FAULT_INJECT="")
    try:
        retried = http.post(f"{saga_stack.node.http}/api/v1/sagas/{started['id']}/retry", headers=api_user.headers)
        assert retried.status_code == 202
        report = _wait_state(http, saga_stack, api_user, started["id"], states={"compensated"})
        comment_id = _steps(report)["comment"]["result"]["comment_id"]
        assert Comment.objects.get(id=comment_id).status == CommentStatus.DELETED
        assert _live_reactions(comment_id) == 0
    finally:
        saga_stack.restart_worker()


def test_retry_after_compensation_runs_the_saga_again_as_a_new_generation(
    saga_stack: FaultStack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    started = _start(http, saga_stack, stream, api_user, "fail-react")
    _wait_state(http, saga_stack, api_user, started["id"])
    saga_stack.restart_worker(CHORUS_FAULT_INJECT="")
    try:
        assert (
            http.post(
                f"{saga_stack.node.http}/api/v1/sagas/{started['id']}/retry", headers=api_user.headers
            ).status_code
            == 202
        )
        report = _wait_state(http, saga_stack, api_user, started["id"], states={"succeeded"})
        assert report["generation"] == 2
        new_comment = _steps(report)["comment"]["result"]["comment_id"]
        assert Comment.objects.get(id=new_comment).status == CommentStatus.PUBLISHED
        assert _live_reactions(new_comment) == 1
        again = http.post(f"{saga_stack.node.http}/api/v1/sagas/{started['id']}/retry", headers=api_user.headers)
        assert again.status_code == 409 and again.json()["code"] == "nothing_to_retry"
    finally:
        saga_stack.restart_worker()


def _kill_worker_as_step_2_starts(http, stack, stream, user) -> dict:
    """Start a saga whose step 2 hangs, and SIGKILL the worker once step 1 committed and step 2 began."""
    started = _start(http, stack, stream, user, "hang-react")
    wait_until(
        lambda: _steps(_report(http, stack, user, started["id"]))["react"]["state"] == "running",
        timeout=30,
        what="step 2 to start",
    )
    stack.worker.kill(signal.SIGKILL)
    return started


def test_worker_killed_between_steps_is_resumed(
    saga_stack: FaultStack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """The worker dies as step 2 starts (after step 1 committed); the saga resumes and finishes once."""
    started = _kill_worker_as_step_2_starts(http, saga_stack, stream, api_user)
    saga_stack.restart_worker(CHORUS_FAULT_INJECT="")
    try:
        # The message comes back after the visibility timeout; an operator can also resume at once.
        resumed = manage("sagas", "resume", started["id"], env=saga_stack.env)
        assert resumed.returncode == 0, resumed.stderr
        report = _wait_state(http, saga_stack, api_user, started["id"], states={"succeeded"})
        comment_id = _steps(report)["comment"]["result"]["comment_id"]
        assert Comment.objects.filter(stream=stream).count() == 1
        assert _live_reactions(comment_id) == 1
        assert StreamEvent.objects.filter(stream=stream, type="comment.created").count() == 1
    finally:
        saga_stack.restart_worker()


def test_compensations_run_twice_have_one_effect(
    saga_stack: FaultStack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """Running the undo of both steps again (or for a step that never happened) changes nothing."""
    report = _wait_state(http, saga_stack, api_user, _start(http, saga_stack, stream, api_user, "fail-react")["id"])
    run = SagaRun.objects.get(id=report["id"])
    events_before = StreamEvent.objects.filter(stream=stream).count()
    ctx = SagaContext(
        run_id=run.id,
        user_id=run.user_id,
        stream_id=run.stream_id,
        input=run.input,
        generation=run.generation,
        results={s["name"]: s["result"] for s in report["steps"] if s["result"]},
    )
    for _ in range(2):
        remove_reaction(ctx)
        delete_comment(ctx)
    never = SagaContext(
        run_id=uuid.uuid4(), user_id=run.user_id, stream_id=run.stream_id, input=run.input, generation=1
    )
    remove_reaction(never)
    delete_comment(never)
    assert StreamEvent.objects.filter(stream=stream).count() == events_before


def test_bad_input_and_other_users(
    saga_stack: FaultStack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    from rest_framework.authtoken.models import Token

    from tests.conftest import ApiUser
    from tests.factories import UserFactory

    base = f"{saga_stack.node.http}/api/v1"
    bad_kind = http.post(
        f"{base}/streams/{stream.slug}/comment-and-react", json={"body": "x", "kind": "nope"}, headers=api_user.headers
    )
    assert bad_kind.status_code == 400 and "kind" in bad_kind.json()["fields"]
    no_body = http.post(
        f"{base}/streams/{stream.slug}/comment-and-react", json={"kind": "heart"}, headers=api_user.headers
    )
    assert no_body.status_code == 400 and "body" in no_body.json()["fields"]
    assert (
        http.post(
            f"{base}/streams/nope/comment-and-react", json={"body": "x", "kind": "heart"}, headers=api_user.headers
        ).status_code
        == 404
    )
    assert (
        http.post(f"{base}/streams/{stream.slug}/comment-and-react", json={"body": "x", "kind": "heart"}).status_code
        == 401
    )
    assert SagaRun.objects.count() == 0
    started = _start(http, saga_stack, stream, api_user, "mine")
    other_user = UserFactory.create()
    other = ApiUser(user=other_user, token=Token.objects.create(user=other_user).key)
    assert http.get(f"{base}/sagas/{started['id']}", headers=other.headers).status_code == 404
    assert http.post(f"{base}/sagas/{started['id']}/retry", headers=other.headers).status_code == 404
    assert http.get(f"{base}/sagas/not-a-uuid", headers=api_user.headers).status_code == 404


def test_the_periodic_sweep_resumes_a_saga_whose_worker_died_between_steps(
    api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """With redelivery out of reach (a long visibility timeout), beat's stalled-saga sweep finishes it."""
    import os

    from tests.delivery.conftest import start_fault_stack
    from tests.sagas.conftest import FAULTS
    from tests.support.processes import CeleryBeat

    stack = start_fault_stack(
        "redis",
        os.environ["REDIS_URL"],
        CHORUS_FAULT_INJECT=FAULTS,
        CELERY_VISIBILITY_TIMEOUT="600",
        CHORUS_SAGA_CLAIM_LEASE_SECONDS="2",
        CHORUS_SAGA_STALL_SECONDS="2",
    )
    try:
        started = _kill_worker_as_step_2_starts(http, stack, stream, api_user)
        stack.restart_worker(CHORUS_FAULT_INJECT="")
        stack.start(CeleryBeat("saga-beat", env=stack.env))
        report = _wait_state(http, stack, api_user, started["id"], states={"succeeded"})
        assert f"saga {started['id']} stalled" in stack.worker.log_text()
        assert _live_reactions(_steps(report)["comment"]["result"]["comment_id"]) == 1
        assert Comment.objects.filter(stream=stream).count() == 1
    finally:
        stack.stop()
